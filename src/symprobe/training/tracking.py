"""Training in sessions of a few epochs, with the rotational error of the current weights measured after each:
how an unconstrained model learns symmetry along its training (:func:`train_tracking_rotation`)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from symprobe.files import write_json
from symprobe.models.pet import PETModule
from symprobe.training.config import TrainConfig
from symprobe.training.data import Sample
from symprobe.training.evaluation import rotational_errors
from symprobe.training.loop import train


def train_tracking_rotation(config: TrainConfig, test: Sequence[Sample], every_epochs: int, rotations: int,
                            log: Path, steps_per_epoch: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Train (or resume) ``config`` to its last epoch in sessions of ``every_epochs`` epochs; after each session the
    rotational errors (:func:`~symprobe.training.evaluation.rotational_errors`, float64, ``rotations`` Haar
    rotations per structure, meV/cell and meV/Å) of the checkpoint's weights on ``test`` are appended to ``log``
    (JSON, written atomically, kept across resumes) with the epoch, optimiser step and wall time (s).
    Returns (the final summary, ``summary.json``: test errors of the best model; the rotational errors along training)."""
    run = Path(config.output_dir)
    checkpoint = run / "checkpoint.pt"
    along = json.loads(log.read_text()) if log.exists() else []
    epoch = torch.load(checkpoint, map_location="cpu", weights_only=False)["state"]["epoch"] if checkpoint.exists() else 0
    while epoch < config.training["epochs"]:
        train(config, resume=checkpoint.exists(), stop_after_epochs=every_epochs, progress=False)
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
        epoch = saved["state"]["epoch"]
        module = PETModule(saved["hypers"])
        module.load_state_dict(saved["model"])
        along.append({"epoch": epoch, "step": epoch * steps_per_epoch, "wall_seconds": saved["state"]["wall_seconds"],
                      **rotational_errors(module, test, rotations)})
        write_json(log, along)
    return json.loads((run / "summary.json").read_text()), along
