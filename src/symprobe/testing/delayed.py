"""A model with a known wall-time cost per call, for tests of cost measurements, plans and interrupts: the energies
and forces of any model, after sleeping ``per_structure_s`` seconds per structure and ``per_copy_s`` per rotated copy
of each ``predict_many`` call (a pretrained model such as SevenNet costs about so much: one network pass per
structure, longer with more copies). It counts its calls and copies."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from ase import Atoms

from symprobe.models.base import BatchPrediction, Model


class DelayedModel(Model):
    """``model`` made slower by a known delay per call (module docstring); ``calls`` and ``copies`` count the
    ``predict_many`` calls and the rotated copies they evaluated."""

    def __init__(self, model: Model, per_structure_s: float = 0.0, per_copy_s: float = 0.0):
        self.model = model
        self.per_structure_s, self.per_copy_s = float(per_structure_s), float(per_copy_s)
        self.name = f"{model.name} (delayed)"
        self.species = model.species
        self.implemented_properties = model.implemented_properties
        self.calls = 0
        self.copies = 0

    def delay_s(self, structures: int, copies: int) -> float:
        """The seconds one call of ``copies`` rotated copies of ``structures`` structures sleeps."""
        return self.per_structure_s * structures + self.per_copy_s * copies

    def _predict_many(self, structures: list[Atoms], rotations: list[np.ndarray]) -> list[BatchPrediction]:
        copies = sum(len(R) for R in rotations)
        self.calls += 1
        self.copies += copies
        time.sleep(self.delay_s(len(structures), copies))
        return self.model.predict_many(structures, rotations)


def sleeping_task(directory: Path, seconds: float) -> dict[str, float]:
    """A :class:`~symprobe.cluster.farm.Task` function that only sleeps ``seconds`` (s), for tests of where and when
    tasks run; its attempt log (``directory/attempts.jsonl``) records the start and end."""
    time.sleep(seconds)
    return {"slept_s": seconds}
