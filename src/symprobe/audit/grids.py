"""The audit's quadratures: the reference grid, the convergence grids, the rule of the λ spectrum, and the
number of model evaluations per structure that a set of rules costs (duplicate rotations shared)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from symprobe import so3

DEFAULT_GRID = "3i"  # the paper's reference: 75-point Legendre–Euler grid × inversion (150 evaluations)
PAPER_GRIDS = ("0", "i", "2", "2i", "3")  # the paper's coarser grids (1, 2, 18, 36, 75 evaluations)
OWN_DEGREES = (1, 2, 3, 5)  # symprobe's smallest rules with inversion (8, 24, 48, 120 evaluations) in the convergence study


def default_convergence_grids() -> list:
    """The paper's coarser grids (0, i, 2, 2i, 3) and symprobe's smallest rules with inversion of degree 1, 2, 3, 5."""
    return [so3.paper_grid(label) for label in PAPER_GRIDS] + [so3.smallest(d, improper=True) for d in OWN_DEGREES]


def default_lmax(reference) -> int:
    """The λmax of the spectrum when none is asked for: the largest λ that the reference rule gives exactly
    (degree ≥ 2·λ, so no evaluations beyond the reference's), and at least 1 (λ = 1 is where breaking shows first)."""
    return max(1, reference.degree // 2)


def spectrum_grid(lmax: int, improper: bool, reference=None):
    """The rule for the λ spectrum: exact to degree 2·lmax, so that f·D^λ integrates exactly for f of
    content ≤ lmax. ``reference`` (the audit grid) is reused when it qualifies, else the cheapest rule."""
    if reference is not None and reference.degree >= 2 * lmax and reference.improper == improper:
        return reference
    return so3.smallest(2 * lmax, improper=improper)


def _unique_rotations(rotations: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct rotations (to 1e-10) and, for every input rotation, its index among them."""
    keys = np.round(rotations.reshape(len(rotations), 9), 10) + 0.0  # + 0.0 turns −0.0 into 0.0
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    return rotations[first], inverse.reshape(-1)


def evaluations(rules: Sequence) -> int:
    """Model evaluations per structure for quadratures ``rules`` plus the identity (duplicates shared)."""
    return len(_unique_rotations(np.concatenate([np.eye(3)[None]] + [q.rotations for q in rules]))[0])
