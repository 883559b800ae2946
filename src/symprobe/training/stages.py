"""Pre-training then fine-tuning in one config: the ``pretrain`` section (issue 30).

A config with ``pretrain`` trains in two stages. The pretrain stage (``output_dir/pretrain``) fits the same model
to ``pretrain.data`` (e.g. q-TIP4P/F labels from ``symprobe pretrain-data``) with the config's ``training``
section updated by ``pretrain.training`` (and ``pretrain.model.direct_forces``, for a direct-force pre-training).
The fine-tune stage (``output_dir``) starts from the pretrain stage's best model (its ``training.init_from``)
with a fresh Adam and its own warmup and cosine schedule from ``training.lr`` (the learning-rate restart),
``training.energy_reference`` (``refit``: per-species reference energies re-fitted on the fine-tune training
set, needed when the two label sets have different zeros of energy) and ``training.freeze_blocks``.

Each stage is an ordinary resumable run (:func:`~symprobe.training.loop.train`); a finished pretrain stage is
never rerun, so ``--resume`` continues bit for bit wherever the pipeline stopped, between the stages included.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from symprobe.training.config import FINE_TUNE_ONLY, TrainConfig, TrainingSection
from symprobe.training.loop import train

PRETRAIN_DIR = "pretrain"


def pretrain_stage(config: TrainConfig) -> TrainConfig:
    """The pretrain stage of a config with a ``pretrain`` section (``output_dir/pretrain``)."""
    if config.pretrain is None:
        raise ValueError(f"{config.name}: the config has no pretrain section")
    fine_tune_only = {key: TrainingSection.model_fields[key].default for key in FINE_TUNE_ONLY}
    return TrainConfig(name=f"{config.name}-{PRETRAIN_DIR}", output_dir=Path(config.output_dir) / PRETRAIN_DIR,
                       data=config.pretrain["data"], model={**config.model, **config.pretrain["model"]},
                       training={**config.training, **fine_tune_only, **config.pretrain["training"]}, source=config.source)


def fine_tune_stage(config: TrainConfig) -> TrainConfig:
    """The fine-tune stage of a config with a ``pretrain`` section: the config itself, starting from the pretrain
    stage's best model; a config without one is returned as it is."""
    if config.pretrain is None:
        return config
    best = Path(config.output_dir) / PRETRAIN_DIR / "best.pt"
    return dataclasses.replace(config, pretrain=None, training={**config.training, "init_from": str(best)})


def _finished(run: Path) -> bool:
    summary = run / "summary.json"
    return summary.exists() and bool(json.loads(summary.read_text()).get("finished"))


def train_stages(config: TrainConfig, resume: bool = False, stop_after_epochs: int | None = None,
                 progress: bool = True) -> dict[str, Any]:
    """Train ``config``: :func:`~symprobe.training.loop.train` for a plain config; for one with ``pretrain``, the
    pretrain stage unless it has finished, then the fine-tune stage. ``resume`` continues the stage that has a
    checkpoint (the fine-tune stage starts fresh when it has none yet). Returns the summary of the last stage that
    ran, with ``stage`` (``pretrain`` or ``fine-tune``); ``stop_after_epochs`` applies to each stage's session."""
    if config.pretrain is None:
        return train(config, resume=resume, stop_after_epochs=stop_after_epochs, progress=progress)
    first = pretrain_stage(config)
    if not _finished(Path(first.output_dir)):
        summary = train(first, resume=resume, stop_after_epochs=stop_after_epochs, progress=progress)
        if not summary["finished"]:
            return {**summary, "stage": "pretrain"}
    second = fine_tune_stage(config)
    started = (Path(second.output_dir) / "checkpoint.pt").exists()
    summary = train(second, resume=resume and started, stop_after_epochs=stop_after_epochs, progress=progress)
    return {**summary, "stage": "fine-tune"}
