"""Training PET-style models (and their invariant twins) from a YAML config.

``symprobe train CONFIG.yaml [--resume]`` reads extended-XYZ data (energies, forces, optional stress),
splits it reproducibly from a seed, fits per-species reference energies by least squares, and minimises

    loss = w_E ⟨(ΔE/N)²⟩ + w_F ⟨ΔF²⟩ + w_S ⟨Δσ²⟩ + w_sym ⟨Var_R(E(R x))/N²⟩      (eV, Å units)

with Adam and a warmup + cosine (or plateau) learning-rate schedule. Random O(3) augmentation draws one
Haar rotation per structure per epoch (inverted with probability ½). ``training.init_from`` starts from the
weights of a saved model (fine-tuning, or pretraining on cheap labels first); its per-species reference
energies are then re-fitted on the new training data (``training.energy_reference: refit``; ``keep`` keeps the
source's), and ``training.freeze_blocks`` stops training the first blocks' token layers (readout heads stay
trainable); a ``pretrain`` section runs both stages from one config (:mod:`.stages`); ``data.train_subset``
trains on a prefix of the training split with the same validation and test structures (learning curves). Validation runs every epoch without
augmentation; ``best.pt`` keeps the model with the lowest validation force MAE; ``checkpoint.pt`` (written
atomically every epoch, every ``training.checkpoint_steps`` steps inside one, and when SIGINT/SIGTERM or
``training.max_hours`` stops the run, which is checked before every step) holds everything needed for
``--resume`` to continue exactly, on any device.
``training.forces: direct`` (with ``model.direct_forces: true``) fits the force head's direct forces instead of
−∂E/∂x: no second derivative, so an epoch costs less (pre-training; validation then uses the direct forces too),
and a conservative fine-tune starts from it through ``init_from``, dropping the head. ``training.precision`` (float32, tf32, bf16) is the precision of the training steps; validation and test
errors are always computed in ``training.dtype``. Outputs in
``output_dir``: ``log.csv``, ``log.json`` (every epoch), ``learning_curve.png`` (at the end of each session),
``test_metrics.json``, ``train.log``.

Modules: :mod:`.config` (the YAML schema :class:`TrainConfigFile`, :class:`TrainConfig`), :mod:`.data` (samples, the split,
augmentation, batches; the bundled water models' split, :func:`water_split`), :mod:`.baseline` (per-species reference energies), :mod:`.evaluation` (test errors,
rotational errors, the rotation gradient), :mod:`.loop` (:func:`train`), :mod:`.stages` (pre-training then
fine-tuning from one config: :func:`train_stages`), :mod:`.pretrain_data` (the q-TIP4P/F pre-training set of
``symprobe pretrain-data``) and :mod:`.bundling` (:func:`bundle`, model cards).
"""

from symprobe.checks import ConfigError
from symprobe.training.baseline import fit_baseline, refit_baseline, refit_best, refit_offset
from symprobe.training.bundling import bundle, model_card_markdown, training_stages
from symprobe.training.config import TrainConfig, TrainConfigFile, device_for, load_config, make_config
from symprobe.training.data import (Sample, load_samples, make_batch, module_device, random_o3, split_indices, training_split,
                                    water_split, water_test_structures)
from symprobe.training.evaluation import evaluate, rotation_gradient, rotational_errors
from symprobe.training.loop import block_prefixes, freeze_early_blocks, hardware, init_weights, plot_learning_curve, train
from symprobe.training.stages import fine_tune_stage, pretrain_stage, train_stages

__all__ = ["ConfigError", "Sample", "TrainConfig", "TrainConfigFile", "block_prefixes", "bundle", "device_for",
           "evaluate", "fine_tune_stage", "fit_baseline", "freeze_early_blocks", "hardware", "init_weights", "load_config",
           "load_samples", "make_batch", "make_config", "model_card_markdown", "module_device", "plot_learning_curve",
           "pretrain_stage", "random_o3", "refit_baseline", "refit_best", "refit_offset", "rotation_gradient", "rotational_errors",
           "split_indices", "train", "train_stages", "training_split", "training_stages", "water_split", "water_test_structures"]
