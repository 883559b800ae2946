"""Training PET-style models (and their invariant twins) from a YAML config.

``symprobe train CONFIG.yaml [--resume]`` reads extended-XYZ data (energies, forces, optional stress),
splits it reproducibly from a seed, fits per-species reference energies by least squares, and minimises

    loss = w_E ⟨(ΔE/N)²⟩ + w_F ⟨ΔF²⟩ + w_S ⟨Δσ²⟩ + w_sym ⟨Var_R(E(R x))/N²⟩      (eV, Å units)

with Adam and a warmup + cosine (or plateau) learning-rate schedule. Random O(3) augmentation draws one
Haar rotation per structure per epoch (inverted with probability ½). ``training.init_from`` starts from the
weights of a saved model (fine-tuning, or pretraining on cheap labels first); its composition offset is then
re-fitted on the new training data; ``data.train_subset`` trains on a prefix of the training split with the same
validation and test structures (learning curves). Validation runs every epoch without
augmentation; ``best.pt`` keeps the model with the lowest validation force MAE; ``checkpoint.pt`` (written
atomically every epoch, and inside an epoch when SIGINT/SIGTERM or ``training.max_hours`` stops the run, which
is checked before every step) holds everything needed for ``--resume`` to continue exactly, on any device.
``training.forces: direct`` (with ``model.direct_forces: true``) fits the force head's direct forces instead of
−∂E/∂x: no second derivative, so an epoch costs less (pre-training; validation then uses the direct forces too),
and a conservative fine-tune starts from it through ``init_from``, dropping the head. ``training.precision`` (float32, tf32, bf16) is the precision of the training steps; validation and test
errors are always computed in ``training.dtype``. Outputs in
``output_dir``: ``log.csv``, ``log.json`` (every epoch), ``learning_curve.png`` (at the end of each session),
``test_metrics.json``, ``train.log``.
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from symprobe import so3
from symprobe.checks import (Check, ConfigError, check_keys, check_section, choice, flag, mapping, number, optional, positive,
                             read_yaml, text)
from symprobe.files import atomic_write, check_writable, replacing, save_figure
from symprobe.interrupt import StopRequest, deferred_signals
from symprobe.models.device import PRECISIONS, device_name, precision
from symprobe.models.pet import PETModule, default_hypers, load_module, save_model
from symprobe.models.torch_model import Graph, energy_forces_stress, neighbour_list, stack_graph
from symprobe.structures import read_structures, reference_labels, shared_data_dir

DATA_KEYS = {"path": None, "train": None, "val": None, "test": None, "seed": 0, "train_subset": None}
TRAINING_KEYS = {
    "seed": 0,
    "epochs": 100,
    "batch_size": 2,
    "lr": 1.0e-3,
    "lr_min": 1.0e-5,
    "warmup_epochs": 2,
    "schedule": "cosine",
    "plateau_patience": 10,
    "plateau_factor": 0.5,
    "energy_weight": 0.1,
    "force_weight": 1.0,
    "stress_weight": 0.0,
    "augmentation": True,
    "symmetry_penalty": 0.0,
    "penalty": "spread",
    "penalty_rotations": 2,
    "max_hours": None,
    "threads": None,
    "dtype": "float32",
    "precision": "float32",
    "device": "cpu",
    "init_from": None,
    "forces": "conservative",
}
TOP_KEYS = {"name", "output_dir", "data", "model", "training"}

_COUNT, _SEED = partial(number, integer=True, minimum=1), partial(number, integer=True, minimum=0)
_WEIGHT = partial(number, minimum=0)
_DATA_CHECKS: dict[str, Check] = {"path": text, "train": _COUNT, "val": _COUNT, "test": _SEED, "seed": _SEED, "train_subset": optional(_COUNT)}
_TRAINING_CHECKS: dict[str, Check] = {
    "seed": _SEED, "epochs": _COUNT, "batch_size": _COUNT, "lr": positive, "lr_min": _WEIGHT, "warmup_epochs": _WEIGHT,
    "schedule": partial(choice, options=("cosine", "plateau")), "plateau_patience": _SEED,
    "plateau_factor": partial(number, above=0, below=1), "energy_weight": _WEIGHT, "force_weight": _WEIGHT,
    "stress_weight": _WEIGHT, "augmentation": flag, "symmetry_penalty": _WEIGHT,
    "penalty": partial(choice, options=("spread", "equigrad")), "penalty_rotations": partial(number, integer=True, minimum=2),
    "max_hours": optional(positive), "threads": optional(_COUNT), "dtype": partial(choice, options=("float32", "float64")),
    "precision": partial(choice, options=PRECISIONS), "device": text, "init_from": optional(text),
    "forces": partial(choice, options=("conservative", "direct")),
}
_MODEL_CHECKS: dict[str, Check] = {
    "species": lambda value, key: [_COUNT(z, f"{key}[]") for z in _list(value, key)],
    "cutoff": positive, "cutoff_width": positive, "width": _COUNT, "heads": _COUNT, "blocks": _COUNT,
    "layers_per_block": _COUNT, "feedforward": optional(_COUNT), "radial_basis": _COUNT, "angular_degree": _SEED, "invariant": flag,
    "direct_forces": flag,
}


def _list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} must be a non-empty list, got {value!r}")
    return value


@dataclass
class TrainConfig:
    """A checked training config; ``model`` holds the architecture hyper-parameters."""

    name: str
    output_dir: Path
    data: dict[str, Any]
    model: dict[str, Any]
    training: dict[str, Any]
    source: Path | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "output_dir": str(self.output_dir), "data": self.data, "model": self.model, "training": self.training}


def load_config(path: str | Path) -> TrainConfig:
    """Read and check a YAML training config (:class:`ConfigError` naming the file and key)."""
    path = Path(path)
    return make_config(read_yaml(path) or {}, base_dir=path.parent, source=path)


def make_config(raw: dict[str, Any], base_dir: str | Path = ".", source: Path | None = None) -> TrainConfig:
    """Check a config dictionary (every key: type and range); relative paths are taken from ``base_dir``;
    ``shared:REL`` means the shared data directory (see :func:`~symprobe.structures.shared_data_dir`)."""
    where = str(source or "config")
    try:
        raw = mapping(raw, "the config")
        check_keys(raw, TOP_KEYS, "config")
        missing = [key for key in ("path", "train", "val", "test") if key not in mapping(raw.get("data") or {}, "data")]
        if missing:
            raise ConfigError(f"data: missing required key(s) {', '.join(missing)}")
        data = check_section(raw.get("data") or {}, _DATA_CHECKS, DATA_KEYS, "data")
        training = check_section(raw.get("training") or {}, _TRAINING_CHECKS, TRAINING_KEYS, "training")
        model = check_section(raw.get("model") or {}, _MODEL_CHECKS, default_hypers(), "model")
        if data["train_subset"] is not None and data["train_subset"] > data["train"]:
            raise ConfigError(f"data.train_subset ({data['train_subset']}) must not exceed data.train ({data['train']})")
        if model["cutoff_width"] > model["cutoff"]:
            raise ConfigError(f"model.cutoff_width ({model['cutoff_width']}) must not exceed model.cutoff ({model['cutoff']})")
        if model["width"] % model["heads"]:
            raise ConfigError(f"model.width ({model['width']}) must be a multiple of model.heads ({model['heads']})")
        if training["lr_min"] > training["lr"]:
            raise ConfigError(f"training.lr_min ({training['lr_min']}) must not exceed training.lr ({training['lr']})")
        if training["precision"] != "float32" and training["dtype"] != "float32":
            raise ConfigError(f"training.precision {training['precision']!r} needs training.dtype float32, got {training['dtype']!r}")
        if training["forces"] == "direct" and not model["direct_forces"]:
            raise ConfigError("training.forces 'direct' needs model.direct_forces: true (a force head)")
        if training["forces"] == "direct" and training["stress_weight"] > 0:
            raise ConfigError("training.forces 'direct' has no stress: set training.stress_weight to 0")
        if not re.fullmatch(r"cpu|cuda(:\d+)?", training["device"]):
            raise ConfigError(f"training.device must be 'cpu', 'cuda' or 'cuda:N', got {training['device']!r}")
        data["path"] = str(_resolve_data_path(data["path"], Path(base_dir)))
        if training["init_from"] is not None and not Path(training["init_from"]).exists():
            raise ConfigError(f"training.init_from: model file {training['init_from']} does not exist")
        name = str(raw.get("name") or (source.stem if source else "run"))
        output = Path(raw.get("output_dir") or Path("runs") / name)
    except ConfigError as error:
        raise ConfigError(f"{where}: {error}") from None
    return TrainConfig(name, output, data, model, training, source)


def _resolve_data_path(path: str, base_dir: Path) -> Path:
    if path.startswith("shared:"):
        shared = shared_data_dir()
        if shared is None:
            raise ConfigError(f"data path {path!r} needs the shared data directory (set $SYMPROBE_DATA)")
        resolved = shared / path[len("shared:") :]
    else:
        resolved = Path(path) if Path(path).is_absolute() else base_dir / path
    if not resolved.exists():
        raise ConfigError(f"data file {resolved} does not exist")
    return resolved


# --- data ------------------------------------------------------------------------------------------
@dataclass
class Sample:
    """One labelled structure with its neighbour list (unchanged by rotations)."""

    positions: np.ndarray
    numbers: np.ndarray
    cell: np.ndarray
    periodic: bool
    edge_i: np.ndarray
    edge_j: np.ndarray
    shifts: np.ndarray
    energy: float
    forces: np.ndarray
    stress: np.ndarray | None


def load_samples(path: str | Path, cutoff: float) -> list[Sample]:
    """Labelled structures from an extended-XYZ file, neighbour lists computed once."""
    samples = []
    for k, atoms in enumerate(read_structures(path)):
        energy, forces = reference_labels(atoms)
        if energy is None or forces is None:
            raise ConfigError(f"{path}: structure #{k} has no energy or forces")
        stress = None
        if atoms.calc is not None and "stress" in getattr(atoms.calc, "results", {}):
            from symprobe.models.base import voigt_to_matrix

            stress = voigt_to_matrix(atoms.calc.results["stress"]) if np.size(atoms.calc.results["stress"]) == 6 else np.asarray(atoms.calc.results["stress"])
        i, j, shifts = neighbour_list(atoms, cutoff)
        periodic = bool(atoms.pbc.all())
        samples.append(
            Sample(atoms.get_positions(), atoms.numbers.copy(), atoms.cell.array.copy() if periodic else np.zeros((3, 3)), periodic, i, j, shifts, energy, forces, stress)
        )
    return samples


def split_indices(n: int, n_train: int, n_val: int, n_test: int, seed: int) -> dict[str, list[int]]:
    """Reproducible random split of ``n`` structures into train/val/test index lists."""
    if n_train + n_val + n_test > n:
        raise ConfigError(f"split {n_train}+{n_val}+{n_test} needs more structures than the {n} in the data file")
    order = np.random.default_rng(seed).permutation(n)
    return {
        "train": order[:n_train].tolist(),
        "val": order[n_train : n_train + n_val].tolist(),
        "test": order[n_train + n_val : n_train + n_val + n_test].tolist(),
    }


def training_split(config: TrainConfig, n: int) -> dict[str, list[int]]:
    """The split of ``config``: :func:`split_indices`, then only the first ``data.train_subset`` training structures
    when set (validation and test structures do not depend on it: learning curves)."""
    d = config.data
    split = split_indices(n, d["train"], d["val"], d["test"], d["seed"])
    if d["train_subset"] is not None:
        split["train"] = split["train"][: d["train_subset"]]
    return split


def random_o3(rng: np.random.Generator) -> np.ndarray:
    """A Haar-random rotation, inverted (−R) with probability ½."""
    R = so3.haar_rotations(1, rng)[0]
    return -R if rng.random() < 0.5 else R


def make_batch(samples: Sequence[Sample], rotations: Sequence[np.ndarray] | None, dtype: torch.dtype,
               device: torch.device | str = "cpu") -> tuple[Graph, dict[str, torch.Tensor]]:
    """A graph of ``samples`` (rotated by ``rotations`` if given) and its labels rotated alike, on ``device``."""
    positions, cells, forces, stress = [], [], [], []
    for s, sample in enumerate(samples):
        R = np.eye(3) if rotations is None else rotations[s]
        positions.append(sample.positions @ R.T)
        cells.append(sample.cell @ R.T)
        forces.append(sample.forces @ R.T)
        if sample.stress is not None:
            stress.append(R @ sample.stress @ R.T)
    graph = stack_graph(
        positions, [sample.numbers for sample in samples], cells,
        [(sample.edge_i, sample.edge_j, sample.shifts) for sample in samples], dtype,
    )
    energies = [sample.energy for sample in samples]
    n_atoms = [len(sample.numbers) for sample in samples]
    labels = {
        "energy": torch.tensor(energies, dtype=dtype),
        "forces": torch.tensor(np.concatenate(forces), dtype=dtype),
        "n_atoms": torch.tensor(n_atoms, dtype=dtype),
    }
    if len(stress) == len(samples):
        labels["stress"] = torch.tensor(np.stack(stress), dtype=dtype)
    return graph.to(device=device), {key: value.to(device) for key, value in labels.items()}


def module_device(module: torch.nn.Module) -> torch.device:
    """The device that holds ``module``'s parameters."""
    return next(module.parameters()).device


def device_for(name: str) -> torch.device:
    """``training.device`` as a torch device; a clear error when it is not available."""
    from symprobe.models.device import DeviceError, resolve_device

    try:
        return resolve_device(name)
    except DeviceError as error:
        raise ConfigError(f"training.device: {error}") from None


def fit_baseline(samples: Sequence[Sample], species: Sequence[int]) -> tuple[np.ndarray, float]:
    """Per-species reference energies (eV/atom) by least squares on composition, and the energy scale
    (eV): the RMS force component (eV/Å) × 1 Å, so the network's output is of order one."""
    species = list(species)
    unknown = sorted({int(z) for s in samples for z in s.numbers} - set(species))
    if unknown:
        raise ConfigError(f"training data contains species {unknown} not in model.species {species}")
    counts = np.array([[np.sum(s.numbers == z) for z in species] for s in samples], dtype=np.float64)
    energies = np.array([s.energy for s in samples])
    reference = np.linalg.lstsq(counts, energies, rcond=None)[0]
    scale = float(np.sqrt(np.mean(np.concatenate([s.forces.ravel() for s in samples]) ** 2)))
    return reference, scale


# --- evaluation ------------------------------------------------------------------------------------
def evaluate(module: torch.nn.Module, samples: Sequence[Sample], dtype: torch.dtype, batch_size: int = 4,
             direct: bool = False) -> dict[str, float]:
    """Energy MAE (meV/atom), force MAE and RMSE (meV/Å) of ``module`` on ``samples`` (no augmentation); the
    forces are −∂E/∂x, or the force head's with ``direct``."""
    energy_errors, force_errors = [], []
    for start in range(0, len(samples), batch_size):
        graph, labels = make_batch(samples[start : start + batch_size], None, dtype, module_device(module))
        if direct:
            with torch.no_grad():
                energies, forces = module.direct_forces(graph)
        else:
            energies, forces, _ = energy_forces_stress(module, graph)
        energy_errors.append(((energies.detach() - labels["energy"]) / labels["n_atoms"]).double().cpu().numpy())
        force_errors.append((forces.detach() - labels["forces"]).double().cpu().numpy().ravel())
    de, df = np.concatenate(energy_errors), np.concatenate(force_errors)
    return {
        "energy_mae": 1000 * float(np.mean(np.abs(de))),
        "force_mae": 1000 * float(np.mean(np.abs(df))),
        "force_rmse": 1000 * float(np.sqrt(np.mean(df**2))),
    }


# --- training --------------------------------------------------------------------------------------
def _loss(module: torch.nn.Module, graph: Graph, labels: dict[str, torch.Tensor], t: dict[str, Any], rng: np.random.Generator, samples: Sequence[Sample], dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """The training loss and the energy residuals E_ref − E_pred (S,) of the batch."""
    use_stress = t["stress_weight"] > 0
    if t["forces"] == "direct":
        (energies, forces), stress = module.direct_forces(graph), None
    else:
        energies, forces, stress = energy_forces_stress(module, graph, stress=use_stress, create_graph=True)
    loss = t["energy_weight"] * (((energies - labels["energy"]) / labels["n_atoms"]) ** 2).mean()
    loss = loss + t["force_weight"] * ((forces - labels["forces"]) ** 2).mean()
    if use_stress:
        loss = loss + t["stress_weight"] * ((stress - labels["stress"]) ** 2).mean()
    if t["symmetry_penalty"] > 0 and t["penalty"] == "spread":
        k = int(t["penalty_rotations"])
        rotations = [random_o3(rng) for _ in range(k * len(samples))]
        rotated, _ = make_batch([s for _ in range(k) for s in samples], rotations, dtype, module_device(module))
        spread = module(rotated).reshape(k, len(samples)) / labels["n_atoms"]
        loss = loss + t["symmetry_penalty"] * spread.var(dim=0, unbiased=False).mean()
    elif t["symmetry_penalty"] > 0:
        per_atom = rotation_gradient(module, graph, create_graph=True) / labels["n_atoms"][:, None]
        loss = loss + t["symmetry_penalty"] * (per_atom**2).sum(dim=1).mean()
    return loss, (labels["energy"] - energies).detach()


def rotation_gradient(module: torch.nn.Module, graph: Graph, create_graph: bool = False) -> torch.Tensor:
    """∂E/∂θ (S, 3), eV/rad: the derivative of each structure's energy under an infinitesimal rotation
    exp(θ·L) of its positions and cell about the axes x, y, z (ORB's Equigrad). Zero for an invariant model."""
    theta = torch.zeros(len(graph.cells), 3, dtype=graph.positions.dtype, device=graph.positions.device, requires_grad=True)
    zero = torch.zeros_like(theta[:, 0])
    x, y, z = theta.unbind(1)
    generator = torch.stack([torch.stack([zero, -z, y], 1), torch.stack([z, zero, -x], 1),
                             torch.stack([-y, x, zero], 1)], 1)  # (S, 3, 3), R ≈ I + generator
    rotation = torch.eye(3, dtype=theta.dtype, device=theta.device) + generator
    positions = torch.einsum("nb,nab->na", graph.positions, rotation[graph.structure])  # rows: x Rᵀ
    cells = torch.einsum("scb,sab->sca", graph.cells, rotation)
    energies = module(graph.with_coordinates(positions, cells))
    return torch.autograd.grad(energies.sum(), theta, create_graph=create_graph)[0]


def refit_baseline(module: PETModule, samples: Sequence[Sample], residuals: Sequence[float]) -> None:
    """Shift the per-species reference energies by the least-squares fit of the energy residuals
    E_ref − E_pred (eV) on composition, so the composition offset tracks the network's drift."""
    counts = np.array([[np.sum(s.numbers == z) for z in module.species] for s in samples], dtype=np.float64)
    shift = np.linalg.lstsq(counts, np.asarray(residuals, dtype=np.float64), rcond=None)[0]
    with torch.no_grad():
        energy = module.core.species_energy
        energy += torch.as_tensor(shift, dtype=energy.dtype, device=energy.device)


def refit_offset(module: PETModule, samples: Sequence[Sample], dtype: torch.dtype, batch_size: int = 4) -> None:
    """Re-fit the composition offset of ``module`` on the un-rotated ``samples`` (energies in eV)."""
    residuals = []
    with torch.no_grad():
        for start in range(0, len(samples), batch_size):
            graph, labels = make_batch(samples[start : start + batch_size], None, dtype, module_device(module))
            residuals.extend((labels["energy"] - module(graph)).double().tolist())
    refit_baseline(module, samples, residuals)


def init_weights(module: PETModule, path: Path, train_set: Sequence[Sample], dtype: torch.dtype, batch_size: int = 4) -> None:
    """Load the weights of the model file at ``path`` into ``module`` (same hyper-parameters required, except
    ``direct_forces``: a force head is dropped, or starts fresh) and re-fit its composition offset on ``train_set``."""
    source = load_module(path)
    differ = sorted(k for k in module.hypers if k != "direct_forces" and source.hypers.get(k) != module.hypers[k])
    if differ:
        raise ConfigError(f"training.init_from {path}: hyper-parameters {differ} differ from the config's model section")
    target = module.state_dict()
    module.load_state_dict({**target, **{k: v for k, v in source.state_dict().items() if k in target}})
    refit_offset(module, train_set, dtype, batch_size)


def refit_best(path: Path, train_set: Sequence[Sample], dtype: torch.dtype, device: torch.device | str = "cpu",
               batch_size: int = 4) -> dict[str, Any]:
    """Re-fit the composition offset of the saved model at ``path`` on the (un-rotated) training set, on
    ``device``, and save it again; returns its card. During training the offset is fitted on residuals gathered
    while the weights change, which lags behind the network."""
    data = torch.load(path, map_location="cpu", weights_only=False)
    module = load_module(path).to(dtype).to(device).eval()
    refit_offset(module, train_set, dtype, batch_size)
    card = {**data.get("card", {}), "baseline_refit_on_train": True}
    save_model(module, path, card=card)
    return card


def _schedule(t: dict[str, Any], steps_per_epoch: int):
    warmup = max(1, int(t["warmup_epochs"] * steps_per_epoch))
    total = max(warmup + 1, int(t["epochs"] * steps_per_epoch))
    floor = t["lr_min"] / t["lr"]

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if t["schedule"] == "plateau":
            return 1.0
        progress = min(1.0, (step - warmup) / (total - warmup))
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _atomic_torch_save(obj: Any, path: Path) -> None:
    with replacing(path) as tmp:
        torch.save(obj, tmp)


def train(config: TrainConfig, resume: bool = False, stop_after_epochs: int | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or continue) a training; returns the final summary (also written to ``log.json``).

    ``stop_after_epochs`` ends this session after that many epochs (as a time budget would), leaving a
    checkpoint to resume from.
    """
    from tqdm import tqdm

    t = config.training
    out = Path(config.output_dir)
    checkpoint_path = out / "checkpoint.pt"
    if resume and not checkpoint_path.exists():
        raise ConfigError(f"--resume: no checkpoint at {checkpoint_path}")
    if not resume and checkpoint_path.exists():
        raise ConfigError(f"{out} already holds a training run; use --resume to continue it or choose another output_dir")
    check_writable(out)
    if t["threads"]:
        torch.set_num_threads(int(t["threads"]))
    dtype = torch.float64 if t["dtype"] == "float64" else torch.float32
    session_start = time.time()

    cutoff = float(config.model["cutoff"])
    samples = load_samples(config.data["path"], cutoff)
    split = training_split(config, len(samples))
    train_set = [samples[k] for k in split["train"]]
    val_set = [samples[k] for k in split["val"]]
    if t["stress_weight"] > 0 and any(s.stress is None or not s.periodic for s in train_set):
        raise ConfigError("training.stress_weight > 0 but some training structures have no stress label")

    device = device_for(str(t["device"]))
    torch.manual_seed(int(t["seed"]))
    module = PETModule(config.model).to(dtype)
    reference, scale = fit_baseline(train_set, module.species)
    module.set_baseline(torch.tensor(reference), scale)
    module.to(device)
    if t["init_from"] is not None and not resume:
        init_weights(module, Path(t["init_from"]), train_set, dtype)
    optimizer = torch.optim.Adam(module.parameters(), lr=t["lr"])
    steps_per_epoch = math.ceil(len(train_set) / t["batch_size"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(t, steps_per_epoch))
    warmup_steps = max(1, int(t["warmup_epochs"] * steps_per_epoch))
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=t["plateau_factor"], patience=t["plateau_patience"], min_lr=t["lr_min"])
    state = {"epoch": 0, "best_force_mae": math.inf, "best_epoch": -1, "history": [], "wall_seconds": 0.0}
    within: dict[str, Any] | None = None  # where a checkpoint taken inside an epoch left off
    if resume:
        saved = torch.load(checkpoint_path, map_location="cpu", weights_only=False)  # a GPU's checkpoint loads anywhere
        module.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        plateau.load_state_dict(saved["plateau"])
        torch.set_rng_state(saved["torch_rng"])
        state, within = saved["state"], saved.get("within_epoch")
        if saved["split"] != split:
            raise ConfigError(f"--resume: the data split of {checkpoint_path} differs from the config's")
    state["hardware"] = hardware(device, t)
    start_step = f", step {within['step'] // t['batch_size']}" if within else ""
    print(f"[{config.name}] {module.n_parameters()} parameters, {len(train_set)} train / {len(val_set)} val structures, "
          f"{steps_per_epoch} steps per epoch, starting at epoch {state['epoch']}{start_step}", flush=True)

    def save_checkpoint(within_epoch: dict[str, Any] | None = None) -> None:
        _atomic_torch_save(
            {"model": module.state_dict(), "hypers": module.hypers, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
             "plateau": plateau.state_dict(), "torch_rng": torch.get_rng_state(), "state": state, "split": split, "config": config.as_dict(),
             "within_epoch": within_epoch},
            checkpoint_path,
        )

    epoch_seconds: list[float] = []
    step_seconds: list[float] = []
    epochs_this_session = 0
    rows_at_start = len(state["history"])
    try:
        with deferred_signals() as stop:
            while state["epoch"] < t["epochs"]:
                if stop_after_epochs is not None and epochs_this_session >= stop_after_epochs:
                    break
                if _over_budget(t, session_start, epoch_seconds):
                    print(f"[{config.name}] time budget of {t['max_hours']:.3g} h reached after epoch {state['epoch']}", flush=True)
                    break
                epoch = state["epoch"]
                rng = np.random.default_rng([int(t["seed"]), epoch])
                order = rng.permutation(len(train_set))
                done = within or {"step": 0, "losses": [], "residuals": [], "seconds": 0.0}
                within = None
                if "rng" in done:
                    rng.bit_generator.state = done["rng"]  # where the stopped epoch's draws left off
                losses, residuals = done["losses"], done["residuals"]
                seen = [train_set[k] for k in order[: done["step"]]]
                start = time.time() - done["seconds"]
                module.train()
                batches = range(done["step"], len(order), t["batch_size"])
                bar = tqdm(batches, desc=f"{config.name} epoch {epoch + 1}/{t['epochs']}", disable=not progress, mininterval=1.0 if os.isatty(2) else 60.0)
                for b in bar:
                    if stop.requested or _over_budget(t, session_start, step_seconds):
                        save_checkpoint({"step": b, "rng": rng.bit_generator.state, "losses": losses, "residuals": residuals, "seconds": time.time() - start})
                        break
                    step_start = time.time()
                    batch = [train_set[k] for k in order[b : b + t["batch_size"]]]
                    rotations = [random_o3(rng) for _ in batch] if t["augmentation"] else None
                    graph, labels = make_batch(batch, rotations, dtype, device)
                    with precision(t["precision"], device):
                        loss, residual = _loss(module, graph, labels, t, rng, batch, dtype)
                        optimizer.zero_grad()
                        loss.backward()
                    residuals.extend(residual.double().tolist())
                    seen.extend(batch)
                    optimizer.step()
                    if t["schedule"] == "cosine" or scheduler.last_epoch < warmup_steps:
                        scheduler.step()  # in plateau mode only the warmup is stepwise
                    losses.append(loss.item())
                    bar.set_postfix(loss=f"{losses[-1]:.4g}", refresh=False)
                    step_seconds.append(time.time() - step_start)
                bar.close()
                if len(seen) < len(order):
                    where = f"in epoch {epoch + 1} after {len(seen) // t['batch_size']} of {steps_per_epoch} steps"
                    _interrupted(stop, where, checkpoint_path)
                    print(f"[{config.name}] time budget of {t['max_hours']:.3g} h reached {where}, saved in {checkpoint_path}", flush=True)
                    break
                refit_baseline(module, seen, residuals)
                module.eval()
                metrics = evaluate(module, val_set, dtype, direct=t["forces"] == "direct")
                if t["schedule"] == "plateau" and epoch >= t["warmup_epochs"]:
                    plateau.step(metrics["force_mae"])
                seconds = time.time() - start
                epoch_seconds.append(seconds)
                state["wall_seconds"] += seconds
                state["epoch"] = epoch + 1
                row = {"epoch": epoch + 1, "lr": optimizer.param_groups[0]["lr"], "train_loss": float(np.mean(losses)),
                       **{f"val_{k}": v for k, v in metrics.items()}, "epoch_seconds": seconds, "wall_seconds": state["wall_seconds"]}
                state["history"].append(row)
                if metrics["force_mae"] < state["best_force_mae"]:
                    state["best_force_mae"], state["best_epoch"] = metrics["force_mae"], epoch + 1
                    save_model(module, out / "best.pt", card={"epoch": epoch + 1, "val": metrics, "config": config.as_dict(), "split": split})
                save_checkpoint()
                _write_logs(out, state["history"])
                epochs_this_session += 1
                _interrupted(stop, f"after epoch {state['epoch']}", checkpoint_path)
                print(f"[{config.name}] epoch {epoch + 1}: loss {row['train_loss']:.4g}, val energy MAE {metrics['energy_mae']:.2f} meV/atom, "
                      f"force MAE {metrics['force_mae']:.1f} meV/Å, RMSE {metrics['force_rmse']:.1f} meV/Å, lr {row['lr']:.2e}, {seconds:.1f} s", flush=True)
    finally:  # once per session: a plot takes longer than a GPU epoch
        if len(state["history"]) > rows_at_start:
            plot_learning_curve(state["history"], out / "learning_curve.png")

    summary = {"name": config.name, "epochs_done": state["epoch"], "best_epoch": state["best_epoch"],
               "best_val_force_mae": state["best_force_mae"], "wall_seconds": state["wall_seconds"], "parameters": module.n_parameters(),
               "split": split, "finished": state["epoch"] >= t["epochs"]}
    if (out / "best.pt").exists() and summary["finished"]:
        refit_best(out / "best.pt", train_set, dtype, device)
    if split["test"] and (out / "best.pt").exists():
        best = load_module(out / "best.pt").to(dtype).to(device).eval()
        summary["test"] = evaluate(best, [samples[k] for k in split["test"]], dtype)
        atomic_write(out / "test_metrics.json", json.dumps(summary["test"], indent=2))
    atomic_write(out / "summary.json", json.dumps(summary, indent=2))
    return summary


def _over_budget(t: dict[str, Any], session_start: float, seconds: Sequence[float]) -> bool:
    """Whether one more of the units timed in ``seconds`` (steps or epochs of this session, s) would end past
    ``training.max_hours``; never before one of them has run, so every session makes progress."""
    if t["max_hours"] is None or not seconds:
        return False
    return time.time() - session_start + max(seconds) > 3600 * float(t["max_hours"])


def hardware(device: torch.device, t: dict[str, Any]) -> str:
    """Where and in which precision training ``t`` runs, as the model card gives it."""
    import platform

    where = device_name(device) if device.type == "cuda" else f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})"
    return f"{where}, torch {torch.__version__}, {t['dtype'] if t['precision'] == 'float32' else t['precision']}"


def _interrupted(stop: StopRequest, where: str, checkpoint_path: Path) -> None:
    """Raise ``Interrupted`` if a signal came; the checkpoint was just written (``where`` says at which point)."""
    if stop.requested:
        raise stop.interrupted(f"stopped {where}, saved in {checkpoint_path}; continue with --resume")


def _write_logs(out: Path, history: list[dict[str, Any]]) -> None:
    atomic_write(out / "log.json", json.dumps(history, indent=2))
    with replacing(out / "log.csv") as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)


def plot_learning_curve(history: list[dict[str, Any]], path: Path) -> None:
    """Training loss and validation force/energy errors against epoch (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = [row["epoch"] for row in history]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.5))
    left.semilogy(epochs, [row["train_loss"] for row in history])
    left.set(xlabel="epoch", ylabel="training loss", title="loss")
    right.semilogy(epochs, [row["val_force_mae"] for row in history], label="force MAE (meV/Å)")
    right.semilogy(epochs, [row["val_energy_mae"] for row in history], label="energy MAE (meV/atom)")
    right.set(xlabel="epoch", title="validation")
    right.legend()
    fig.tight_layout()
    save_figure(fig, path, dpi=100)


# --- bundling --------------------------------------------------------------------------------------
def rotational_errors(module: torch.nn.Module, samples: Sequence[Sample], n_rotations: int = 8, seed: int = 0) -> dict[str, float]:
    """Spread of predictions over random proper rotations, in float64 on ``module``'s device: RMS over structures
    and rotations of E(R x) − ⟨E⟩_R (meV per cell) and of Rᵀ F(R x) − ⟨Rᵀ F⟩_R (meV/Å, over atoms and components)."""
    module = module.to(torch.float64).eval()
    rng = np.random.default_rng(seed)
    energy_dev, force_dev = [], []
    for sample in samples:
        rotations = so3.haar_rotations(n_rotations, rng)
        graph, _ = make_batch([sample] * n_rotations, list(rotations), torch.float64, module_device(module))
        energies, forces, _ = energy_forces_stress(module, graph)
        e = energies.detach().cpu().numpy()
        f = np.einsum("kji,kaj->kai", rotations, forces.detach().cpu().numpy().reshape(n_rotations, -1, 3))
        energy_dev.append(e - e.mean())
        force_dev.append((f - f.mean(axis=0)).ravel())
    return {
        "energy_rms_per_cell": 1000 * float(np.sqrt(np.mean(np.concatenate(energy_dev) ** 2))),
        "force_rms": 1000 * float(np.sqrt(np.mean(np.concatenate(force_dev) ** 2))),
        "rotations": n_rotations,
    }


def bundle(config: TrainConfig, name: str, weights_dir: str | Path | None = None) -> dict[str, Any]:
    """Copy the best model of ``config``'s run into the package as built-in ``name`` (or into ``weights_dir``),
    with a model card (``name.json`` and ``name.md``) whose errors are computed here, on ``training.device``,
    on the run's test structures."""
    from symprobe.models.pet import BUILTIN_NAMES, WEIGHTS_DIR

    if weights_dir is None and name not in BUILTIN_NAMES:
        raise ConfigError(f"bundle name {name!r} is not a built-in name ({', '.join(BUILTIN_NAMES)})")
    out = Path(config.output_dir)
    for needed in ("best.pt", "checkpoint.pt"):
        if not (out / needed).exists():
            raise ConfigError(f"{out / needed} does not exist: train first ({config.source or 'config'})")
    best_file = torch.load(out / "best.pt", map_location="cpu", weights_only=False)
    checkpoint = torch.load(out / "checkpoint.pt", map_location="cpu", weights_only=False)
    state, split = checkpoint["state"], checkpoint["split"]
    samples = load_samples(config.data["path"], float(config.model["cutoff"]))
    staged = out / "bundle-candidate.pt"
    save_model(load_module(out / "best.pt"), staged, card=best_file.get("card"))
    device = device_for(str(config.training["device"]))
    refit_best(staged, [samples[k] for k in split["train"]], torch.float32, device)
    module = load_module(staged).to(torch.float32).to(device).eval()
    test = [samples[k] for k in split["test"]]
    card = {
        "name": name,
        "architecture": "PET-style point-edge transformer" + (" (exactly invariant twin)" if module.hypers["invariant"] else " (unconstrained)"),
        "parameters": module.n_parameters(),
        "hypers": module.hypers,
        "species": module.species,
        "data": {"path": Path(config.data["path"]).name, "structures": len(samples), "units": "eV, Å",
                 "reference": "revPBE0-D3 liquid water, Cheng et al. PNAS 116, 1110 (2019); test set of Langer et al. 2024"},
        "split": {"seed": config.data["seed"], "train": len(split["train"]), "val": len(split["val"]), "test": len(split["test"]),
                  "test_indices": split["test"]},
        "training": config.training,
        "epochs_done": state["epoch"],
        "best_epoch": state["best_epoch"],
        "stages": (stages := training_stages(config, state["epoch"], state["best_epoch"], state["wall_seconds"])),
        "training_wall_hours": sum(stage["wall_seconds"] or 0.0 for stage in stages) / 3600,
        "hardware": state.get("hardware") or hardware(torch.device("cpu"), config.training),
        "validation": best_file["card"].get("val"),
        "test": {**evaluate(module, test, torch.float32), "units": "energy meV/atom, forces meV/Å", "structures": len(test)},
        "rotational_errors_float64": {**rotational_errors(load_module(staged).to(device), test), "units": "meV/cell, meV/Å",
                                      "paper_PET": {"energy_per_cell": 5.1, "force": 2.0}},
    }
    target = Path(weights_dir) if weights_dir is not None else WEIGHTS_DIR
    target.mkdir(parents=True, exist_ok=True)
    save_model(module.cpu(), target / f"{name}.pt", card=card)
    atomic_write(target / f"{name}.json", json.dumps(card, indent=2))
    atomic_write(target / f"{name}.md", model_card_markdown(card, config))
    return card


def training_stages(config: TrainConfig, epochs: int, best_epoch: int, wall_seconds: float) -> list[dict[str, Any]]:
    """The training stages that led to ``config``'s best model, earliest first, following ``init_from``:
    each with its epochs, best epoch, wall time (s) and lr schedule. An earlier stage counts up to the epoch
    whose weights were carried on (its wall time from that run's ``log.json``)."""
    stages = [{"output_dir": str(config.output_dir), "epochs": epochs, "best_epoch": best_epoch, "wall_seconds": wall_seconds,
               "lr": config.training["lr"], "lr_min": config.training["lr_min"], "init_from": config.training["init_from"]}]
    source = config.training["init_from"]
    while source is not None and Path(source).exists():
        card = torch.load(source, map_location="cpu", weights_only=False).get("card", {})
        run = card.get("config", {})
        log = Path(source).parent / "log.json"
        rows = json.loads(log.read_text()) if log.exists() else []
        wall = next((row["wall_seconds"] for row in rows if row["epoch"] == card.get("epoch")), None)
        training = run.get("training", {})
        stages.insert(0, {"output_dir": run.get("output_dir"), "epochs": card.get("epoch"), "best_epoch": card.get("epoch"),
                          "wall_seconds": wall, "lr": training.get("lr"), "lr_min": training.get("lr_min"),
                          "init_from": training.get("init_from")})
        source = training.get("init_from")
    return stages


def model_card_markdown(card: dict[str, Any], config: TrainConfig) -> str:
    """The model card as Markdown (every number comes from ``card``)."""
    test, rot, h = card["test"], card["rotational_errors_float64"], card["hypers"]
    source = config.source or "the training config"
    return f"""# {card['name']}: {card['architecture']}

Generated by `symprobe train {source} --bundle {card['name']}`; numbers computed by code (see `{card['name']}.json`).

| | |
|---|---|
| parameters | {card['parameters']} |
| cutoff | {h['cutoff']} Å (smooth switching over the last {h['cutoff_width']} Å) |
| width / heads / blocks × layers / feed-forward | {h['width']} / {h['heads']} / {h['blocks']} × {h['layers_per_block']} / {h.get('feedforward') or 2 * h['width']} |
| invariant inputs only | {h['invariant']} |
| species | {card['species']} |
| data | {card['data']['path']} ({card['data']['reference']}) |
| split (seed {card['split']['seed']}) | {card['split']['train']} train / {card['split']['val']} validation / {card['split']['test']} test |
| augmentation | {card['training']['augmentation']} (one Haar rotation per structure per epoch, inversion with probability ½) |
| loss weights | energy/atom {card['training']['energy_weight']}, forces {card['training']['force_weight']} |
| optimiser | Adam, lr {card['training']['lr']} → {card['training']['lr_min']} ({card['training']['schedule']}), batch {card['training']['batch_size']} |
| epochs | {' + '.join(str(stage['epochs']) for stage in card['stages'])} (best validation force MAE at epoch {card['best_epoch']} of the last stage) |
| stages | {'; '.join(f"{stage['epochs']} epochs, lr {stage['lr']} → {stage['lr_min']}" + (' (from the previous stage)' if stage['init_from'] else '') for stage in card['stages'])} |
| training wall time | {card['training_wall_hours']:.2f} h in all on {card['hardware']} |

## Held-out test structures ({test['structures']})
| energy MAE (meV/atom) | force MAE (meV/Å) | force RMSE (meV/Å) |
|---|---|---|
| {test['energy_mae']:.2f} | {test['force_mae']:.1f} | {test['force_rmse']:.1f} |

## Rotational errors on the test structures (float64, {rot['rotations']} random rotations each)
RMS deviation from the rotational mean: energy {rot['energy_rms_per_cell']:.3g} meV/cell, forces {rot['force_rms']:.3g} meV/Å
(the paper's PET: 5.1 meV/cell and 2.0 meV/Å).
"""
