"""Symmetrizers that average a model over rotations: :class:`GridAverage` (a quadrature's weighted average),
:class:`AveragingCorrection` (that average minus the raw model, the slow force of multiple time stepping; its
rule is :func:`correction_rule`) and :class:`RandomRotation` (one Haar-random rotation per call)."""

from __future__ import annotations

from typing import Any

import numpy as np

from symprobe import so3
from symprobe.models.base import Model
from symprobe.so3 import Quadrature
from symprobe.symmetrize.base import Symmetrizer


def _products(grid: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """All R_k S_j as a (J·K, 3, 3) array, ordered j-major (the K grid rotations of each S_j together)."""
    return np.einsum("kab,jbc->jkac", grid, outer).reshape(-1, 3, 3)


class GridAverage(Symmetrizer):
    """The weighted average of ``model`` over the rotations of ``quadrature`` (see :mod:`symprobe.symmetrize`)."""

    def __init__(self, model: Model, quadrature: Quadrature):
        super().__init__(model, f"{model.name} averaged over {quadrature.name}")
        self.quadrature = quadrature

    def _copies(self, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _products(self.quadrature.rotations, rotations), self.quadrature.weights


class AveragingCorrection(Symmetrizer):
    """Grid average minus the raw model: E_avg(x) − E(x), and likewise forces and stress.

    The slow part of multiple time stepping. When the grid holds the identity (the groups T, O, I do) the
    raw term is folded into its weight, so a call has N copies, not N + 1.
    """

    def __init__(self, model: Model, quadrature: Quadrature):
        super().__init__(model, f"{model.name}: {quadrature.name} average minus raw")
        self.quadrature = quadrature
        self.copies, self._weights = correction_rule(quadrature)

    def _copies(self, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return _products(self.copies, rotations), self._weights


def correction_rule(quadrature: Quadrature) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (M, 3, 3) and weights (M,) of "average over ``quadrature`` minus the raw value": the grid
    with the identity's weight lowered by 1 (M = N if the grid holds the identity, else N + 1)."""
    rotations, weights = quadrature.rotations, quadrature.weights.copy()
    is_identity = np.all(np.abs(rotations - np.eye(3)) < 1e-12, axis=(1, 2))
    if is_identity.any():
        weights[np.argmax(is_identity)] -= 1.0
        return rotations, weights
    return np.concatenate([np.eye(3)[None], rotations]), np.concatenate([[-1.0], weights])


class RandomRotation(Symmetrizer):
    """``model`` evaluated on a fresh Haar-random rotation of the input at every call (forces rotated back).

    ``seed`` makes the sequence reproducible; ``improper`` multiplies each rotation by −1 with probability ½
    (sampling O(3)). :meth:`state` / :meth:`restore` save and restore the generator for MD restarts.
    """

    def __init__(self, model: Model, seed: int, improper: bool = False):
        super().__init__(model, f"{model.name} randomly rotated" + (" (with inversion)" if improper else ""))
        self.seed = int(seed)
        self.improper = bool(improper)
        self.rng = np.random.default_rng(self.seed)

    def draw(self, count: int) -> np.ndarray:
        """``count`` Haar-random rotation matrices (count, 3, 3), advancing the generator one copy at a time (a
        rotation, then its inversion), so the sequence does not depend on how calls are batched."""
        rotations = np.empty((count, 3, 3))
        for k in range(count):
            rotations[k] = so3.haar_rotations(1, self.rng)[0]
            if self.improper and self.rng.random() < 0.5:
                rotations[k] *= -1.0
        return rotations

    def _copies(self, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return np.einsum("jab,jbc->jac", self.draw(len(rotations)), rotations), np.ones(1)

    def state(self) -> dict[str, Any]:
        return {"rng": self.rng.bit_generator.state, **super().state()}

    def restore(self, state: dict[str, Any]) -> None:
        self.rng.bit_generator.state = state["rng"]
        super().restore(state)
