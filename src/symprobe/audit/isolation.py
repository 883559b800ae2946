"""Periodic structures audited as isolated ones (a molecule in a large box), refused unless the cell is
wider than the structure plus the model's cutoff (Å) along every periodic cell vector."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from ase import Atoms

from symprobe.audit.results import AuditError
from symprobe.models.base import Model
from symprobe.structures import structure_label


def as_isolated(atoms: Atoms, cutoff: float | None, label: str) -> Atoms:
    """``atoms`` with periodicity switched off (a copy, reference labels kept), for a molecule in a large box.

    Refused with :class:`AuditError` unless, along every periodic cell vector, the cell's width (distance
    between its faces, Å) exceeds the structure's extent along it plus the model's ``cutoff`` (Å): then no
    atom lies within the cutoff of a periodic image, so the model (message passing included) sees the same
    structure with or without the cell. Non-periodic structures are returned as they are.
    """
    if not atoms.pbc.any():
        return atoms
    if cutoff is None or not np.isfinite(cutoff):
        raise AuditError(f"{label}: cannot audit as isolated: the model gives no finite cutoff to compare the cell with")
    normals = atoms.cell.reciprocal()  # row i is normal to the faces spanned by the other two cell vectors
    unit = normals / np.linalg.norm(normals, axis=1, keepdims=True)
    widths = 1.0 / np.linalg.norm(normals, axis=1)
    extents = np.ptp(atoms.get_positions() @ unit.T, axis=0)
    for axis in np.flatnonzero(atoms.pbc):
        if widths[axis] <= extents[axis] + cutoff:
            raise AuditError(f"{label}: cannot audit as isolated: the cell is {widths[axis]:.4g} Å wide along cell vector "
                             f"{'abc'[axis]}, not more than the structure's extent {extents[axis]:.4g} Å plus the model's "
                             f"cutoff {cutoff:.4g} Å, so atoms see their periodic images")
    isolated = atoms.copy()
    isolated.calc = atoms.calc
    isolated.pbc = False
    return isolated


def isolated_structures(model: Model, structures: Sequence[Atoms]) -> list[Atoms]:
    """:func:`as_isolated` of every structure with ``model``'s cutoff; the first refusal is raised."""
    cutoff = getattr(model, "cutoff", None)
    return [as_isolated(atoms, cutoff, structure_label(atoms, k)) for k, atoms in enumerate(structures)]
