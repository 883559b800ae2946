"""Symmetrizers: models that wrap a model and remove (or randomise) its rotational symmetry breaking.

Each symmetrizer is itself a :class:`~symprobe.models.base.Model` (so they compose, and each has
``as_calculator()``):

- :class:`GridAverage` — E(x) = Σ_k w_k E(R_k x), F(x) = Σ_k w_k R_kᵀ F(R_k x), σ(x) = Σ_k w_k R_kᵀ σ(R_k x) R_k
  over a :class:`~symprobe.so3.Quadrature`; conservative and exactly invariant for every model whose
  orientation dependence is band-limited to the rule's degree.
- :class:`RandomRotation` — one Haar-random rotation per call (optionally with inversion), seeded; its
  generator state can be saved and restored so MD restarts reproduce uninterrupted runs.
- :class:`AveragingCorrection` — the grid average minus the raw model (the slow force of multiple time
  stepping), from one batched call holding the identity and the grid.

Every symmetrizer is a rule on rotated copies of the model it wraps (:meth:`Symmetrizer.expand`): nested
symmetrizers multiply their rules, and a call on many structures is one ``predict_many`` call of the
innermost model (:meth:`Symmetrizer.base`), so the copies of all structures share its batched passes.

:func:`recommend` picks the cheapest quadrature whose average meets target rotational errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from symprobe.models.base import BatchPrediction, Model
from symprobe import so3
from symprobe.so3 import Quadrature


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


def _products(grid: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """All R_k S_j as a (J·K, 3, 3) array, ordered j-major (the K grid rotations of each S_j together)."""
    return np.einsum("kab,jbc->jkac", grid, outer).reshape(-1, 3, 3)


class GridAverage(Symmetrizer):
    """The weighted average of ``model`` over the rotations of ``quadrature`` (see module docstring)."""

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


# ---------------------------------------------------------------------------------------------------
# Choosing a grid


@dataclass
class GridError:
    """Rotational error of one quadrature's average against the reference average.

    ``energy`` eV per structure and ``forces`` eV/Å: mean absolute deviation over structures (and force
    components) of the averaged prediction from the reference grid's averaged prediction.
    """

    quadrature: str
    evaluations: int
    energy: float
    forces: float


def grid_errors(
    model: Model, structures: Sequence[Atoms], candidates: Sequence[Quadrature], reference: Quadrature
) -> list[GridError]:
    """Errors of every candidate's average against ``reference``'s average (the paper's measure).

    All structures and rotations go through one ``predict_many`` call.
    """
    if not structures:
        raise ValueError("grid_errors: no structures given")
    rules = [reference, *candidates]
    sizes = np.cumsum([0] + [len(q) for q in rules])
    energy_dev = np.zeros(len(candidates))
    force_dev = np.zeros(len(candidates))
    all_rotations = np.concatenate([q.rotations for q in rules])
    for batch in model.predict_many(structures, [all_rotations] * len(structures)):
        averages = [
            (q.weights @ batch.energies[a:b], np.einsum("k,kai->ai", q.weights, batch.forces[a:b]))
            for q, a, b in zip(rules, sizes[:-1], sizes[1:])
        ]
        e_ref, f_ref = averages[0]
        for c, (e, f) in enumerate(averages[1:]):
            energy_dev[c] += abs(e - e_ref)
            force_dev[c] += np.mean(np.abs(f - f_ref))
    n = len(structures)
    return [GridError(q.name, len(q), energy_dev[c] / n, force_dev[c] / n) for c, q in enumerate(candidates)]


def recommend(
    model: Model,
    structures: Sequence[Atoms],
    target_energy_error: float,
    target_force_error: float,
    candidates: Sequence[Quadrature] | None = None,
    reference: Quadrature | None = None,
) -> Quadrature:
    """The cheapest quadrature whose average deviates from the reference average by at most
    ``target_energy_error`` (eV per structure) and ``target_force_error`` (eV/Å), both mean absolute.

    ``candidates`` default to :func:`default_candidates`; ``reference`` to the cheapest degree-10 rule
    with inversion (1100 evaluations). Raises ``ValueError`` when no candidate meets the targets.
    """
    if target_energy_error <= 0 or target_force_error <= 0:
        raise ValueError(
            f"recommend: targets must be positive (energy {target_energy_error} eV, forces {target_force_error} eV/Å)"
        )
    candidates = sorted(default_candidates() if candidates is None else candidates, key=len)
    reference = reference or _default_reference()
    errors = grid_errors(model, structures, candidates, reference)
    for quadrature, error in zip(candidates, errors):
        if error.energy <= target_energy_error and error.forces <= target_force_error:
            return quadrature
    best = min(errors, key=lambda e: e.energy / target_energy_error + e.forces / target_force_error)
    raise ValueError(
        f"recommend: no candidate grid reaches {target_energy_error:g} eV / {target_force_error:g} eV/Å; the best, "
        f"{best.quadrature} ({best.evaluations} evaluations), has {best.energy:.3g} eV / {best.forces:.3g} eV/Å"
    )


def default_candidates() -> list[Quadrature]:
    """The cheapest known rule of each degree 0–8, with and without inversion, and the paper's Legendre grids:
    those alias less above their degree than the groups, so at equal error they are often cheaper (on the
    liquid test cells the 36-point 2i grid beats every group rule below 60 points, benchmarks/symmetrize_cost.py b)."""
    from symprobe import so3

    rules = [so3.smallest(degree, improper) for degree in range(9) for improper in (False, True)]
    rules += [so3.paper_grid(label) for label in ("2", "2i", "3", "3i")]
    return list({q.name: q for q in rules}.values())


def _default_reference() -> Quadrature:
    from symprobe import so3

    return so3.smallest(10, improper=True)
