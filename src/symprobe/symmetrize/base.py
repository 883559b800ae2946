"""The symmetrizer base class, :class:`Symmetrizer`: a :class:`~symprobe.models.base.Model` that evaluates
the model it wraps on rotated copies of the input (:meth:`Symmetrizer.expand`), and :func:`weighted_sum`,
which contracts the copies' energies (eV), forces (eV/Å) and stress (eV/Å³) with the rule's weights."""

from __future__ import annotations

from typing import Any

import numpy as np
from ase import Atoms

from symprobe.models.base import BatchPrediction, Model


class Symmetrizer(Model):
    """A model wrapping ``inner``; refuses inner models that do not compute forces.

    Subclasses give :meth:`_copies`: the rotated copies of ``inner`` that one call needs and their weights.
    """

    def __init__(self, inner: Model, name: str):
        missing = [p for p in ("energy", "forces") if p not in tuple(inner.implemented_properties)]
        if missing:
            raise ValueError(
                f"{name}: cannot symmetrize model {inner.name!r}: it does not compute {', '.join(missing)} "
                f"(it implements {', '.join(inner.implemented_properties) or 'nothing'}); a symmetrizer needs "
                "energies and forces to rotate them back"
            )
        self.inner = inner
        self.name = name
        self.species = inner.species
        self.implemented_properties = tuple(inner.implemented_properties)

    @property
    def base(self) -> Model:
        """The innermost model, the one that is evaluated."""
        return self.inner.base if isinstance(self.inner, Symmetrizer) else self.inner

    def _copies(self, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Copies (B·K, 3, 3) of ``inner`` evaluating this symmetrizer on the copies ``rotations`` (B, 3, 3), K per
        input copy (consecutive), and the weights (K,) that contract each group."""
        raise NotImplementedError

    def expand(self, rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Like :meth:`_copies`, but copies of :attr:`base`: the rules of nested symmetrizers multiplied."""
        copies, weights = self._copies(np.asarray(rotations, dtype=np.float64))
        if isinstance(self.inner, Symmetrizer):
            copies, inner_weights = self.inner.expand(copies)
            weights = np.kron(weights, inner_weights)
        return copies, weights

    def _predict_many(self, structures: list[Atoms], rotations: list[np.ndarray]) -> list[BatchPrediction]:
        expanded = [self.expand(R) for R in rotations]
        batches = self.base.predict_many(structures, [copies for copies, _ in expanded])
        return [weighted_sum(batch, weights, len(R)) for batch, (_, weights), R in zip(batches, expanded, rotations)]

    def state(self) -> dict[str, Any]:
        """Random-generator state of this symmetrizer and those it wraps (JSON-serialisable)."""
        return {"inner": self.inner.state()} if isinstance(self.inner, Symmetrizer) else {}

    def restore(self, state: dict[str, Any]) -> None:
        """Restore a state returned by :meth:`state`."""
        if isinstance(self.inner, Symmetrizer) and "inner" in state:
            self.inner.restore(state["inner"])


def weighted_sum(batch: BatchPrediction, weights: np.ndarray, groups: int) -> BatchPrediction:
    """Contract ``batch`` laid out as (groups, K) copies with ``weights`` (K,) into ``groups`` predictions."""
    k = len(weights)
    energies = batch.energies.reshape(groups, k) @ weights
    forces = np.einsum("gkai,k->gai", batch.forces.reshape(groups, k, *batch.forces.shape[1:]), weights)
    stress = None
    if batch.stress is not None:
        stress = np.einsum("gkij,k->gij", batch.stress.reshape(groups, k, 3, 3), weights)
    return BatchPrediction(energies, forces, stress)
