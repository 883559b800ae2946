"""Whether a structure can show inversion breaking at all: an achiral structure (one with a mirror plane, an
inversion centre or an improper axis; every planar or linear one) is its own mirror image up to a rotation, a
translation and a relabelling of equal atoms, so E(−x) = E(R x) for every model and the inversion channel is zero
by construction. Such a structure says nothing about a model's parity invariance."""

from __future__ import annotations

import warnings

import numpy as np
from ase import Atoms

from symprobe.analysis.crystal import (
    SPGLIB_DEFAULT as SYMPREC_A,  # Å, spglib's tolerance for crystals
)

TOLERANCE_A = 1e-4  # Å, the tolerance for matching atoms of a molecule to its mirror image


def why_no_inversion_signal(atoms: Atoms) -> str | None:
    """None when ``atoms`` is chiral (it can show inversion breaking); else the reason, a few words
    ("planar", "linear", "a centrosymmetric crystal (spglib, 1e-05 Å)", …)."""
    if atoms.pbc.any():
        return _crystal_reason(atoms) if atoms.pbc.all() else None
    centred = atoms.get_positions() - atoms.get_positions().mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False) if len(atoms) > 1 else np.zeros(3)
    rank = int(np.sum(singular > TOLERANCE_A))
    if rank <= 1:
        return "linear" if len(atoms) > 1 else "a single atom"
    if rank == 2:
        return "planar"
    return "achiral (its mirror image is a rotated copy)" if _has_improper_symmetry(centred, atoms.numbers) else None


def _crystal_reason(atoms: Atoms) -> str | None:
    import spglib

    cell = (atoms.cell.array, atoms.get_scaled_positions(), atoms.numbers)
    with warnings.catch_warnings():  # spglib's notice about its error handling, not about this structure
        warnings.simplefilter("ignore", DeprecationWarning)
        symmetry = spglib.get_symmetry(cell, symprec=SYMPREC_A) or {"rotations": np.eye(3, dtype=int)[None]}
    rotations = symmetry["rotations"]
    if any(np.array_equal(r, -np.eye(3, dtype=int)) for r in rotations):
        return f"a centrosymmetric crystal (spglib, {SYMPREC_A:g} Å)"
    if any(round(np.linalg.det(r)) < 0 for r in rotations):
        return f"an achiral crystal: its space group has a mirror or glide (spglib, {SYMPREC_A:g} Å)"
    return None


def _has_improper_symmetry(centred: np.ndarray, numbers: np.ndarray) -> bool:
    """Whether an orthogonal map of determinant −1 maps the centred positions onto themselves, equal atoms onto
    equal atoms. Any such map is fixed by where it sends two atoms a, b that span a plane with the centroid: it is
    tried for every pair of atoms (a′, b′) of the same species and distances as (a, b)."""
    norms = np.linalg.norm(centred, axis=1)
    a = int(np.argmax(norms))
    b = int(np.argmax(np.linalg.norm(np.cross(centred[a], centred), axis=1)))
    frame = _frame(centred[a], centred[b])
    dot = centred[a] @ centred[b]
    for a2 in np.flatnonzero((numbers == numbers[a]) & (np.abs(norms - norms[a]) < TOLERANCE_A)):
        for b2 in np.flatnonzero((numbers == numbers[b]) & (np.abs(norms - norms[b]) < TOLERANCE_A)):
            if a2 == b2 or abs(centred[a2] @ centred[b2] - dot) > TOLERANCE_A * max(norms[a], 1.0):
                continue
            mirror = _frame(centred[a2], centred[b2]) @ np.diag([1.0, 1.0, -1.0]) @ frame.T
            if _maps_onto_itself(centred @ mirror.T, centred, numbers):
                return True
    return False


def _frame(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Orthonormal columns: û, the part of v orthogonal to u, and their cross product."""
    e1 = u / np.linalg.norm(u)
    w = v - (v @ e1) * e1
    e2 = w / np.linalg.norm(w)
    return np.stack([e1, e2, np.cross(e1, e2)], axis=1)


def _maps_onto_itself(moved: np.ndarray, centred: np.ndarray, numbers: np.ndarray) -> bool:
    distances = np.linalg.norm(moved[:, None] - centred[None], axis=2)
    distances[numbers[:, None] != numbers[None]] = np.inf
    return bool(np.all(distances.min(axis=1) < 10 * TOLERANCE_A))
