"""Choosing a grid: the rotational errors of candidate quadratures' averages against a reference average
(:func:`grid_errors`; energies in eV per structure, forces in eV/Å) and the cheapest candidate that meets
target errors (:func:`recommend`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
from ase import Atoms

from symprobe.models.base import Model
from symprobe.so3 import Quadrature


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
