"""``assert_invariant``: symmetry checks for users' own test suites (pytest or any runner), by channel:

* **rotation**: E(R x) against E(x) (meV/atom) and Rᵀ F(R x) against F(x) (meV/Å, largest component), the largest
  over the proper rotations;
* **inversion**: the rotation-averaged difference between the structure and its mirror image, ⟨E(R x) − E(−R x)⟩_R
  per atom and ⟨Rᵀ F(R x) − (−R)ᵀ F(−R x)⟩_R (the mirror image's forces mapped back), largest component; exact on a
  grid up to its degree (the grid's proper rotations must then form a rule of their own, as every grid with '+i'
  and every group does), a Monte Carlo estimate on random rotations.

Tolerances are absolute (meV/atom, meV/Å) or, where not given, ``floor_factor`` × the prediction's round-off floor
at the model's precision (:func:`~symprobe.audit.precision.roundoff_floor`)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
from ase import Atoms
from ase.calculators.calculator import Calculator

from symprobe import so3
from symprobe.audit.precision import FLOOR_FACTOR, model_dtype, roundoff_floor
from symprobe.models.base import CalculatorModel, Model
from symprobe.structures import structure_label


def assert_invariant(model_or_calculator: Model | Calculator, structures: Atoms | Iterable[Atoms], rotations: int | str = "O",
                     inversion: bool = True, energy_meV_per_atom: float | None = None, force_meV_per_A: float | None = None,
                     floor_factor: float = FLOOR_FACTOR, precision: str | None = None, seed: int = 0) -> None:
    """Raise ``AssertionError`` naming every structure and channel (rotation, inversion) whose breaking exceeds its
    tolerance, with the size and the tolerance.

    ``rotations``: a grid name (``symprobe grids``; its proper rotations are used) or a number of Haar-random
    rotations drawn from ``seed``. ``inversion``: also check the mirror images; then at least one structure must be
    chiral (``ValueError`` otherwise: an achiral one is its own mirror image, :mod:`symprobe.audit.mirror`).
    ``energy_meV_per_atom`` and
    ``force_meV_per_A``: absolute tolerances; each one not given is ``floor_factor`` × the round-off floor at
    ``precision`` ('float32' or 'float64'; default the model's, float64 when unknown).
    """
    model = CalculatorModel(model_or_calculator) if isinstance(model_or_calculator, Calculator) else model_or_calculator
    proper = _proper_rotations(rotations, seed)
    precision = precision or model_dtype(model)
    structures = [structures] if isinstance(structures, Atoms) else list(structures)
    if inversion:
        _check_some_chiral(structures)
    failures = []
    for k, atoms in enumerate(structures):
        label = structure_label(atoms, k)
        batch = model.predict_rotated(atoms, np.concatenate([np.eye(3)[None], proper, -proper] if inversion else [np.eye(3)[None], proper]))
        n, m = len(atoms), len(proper)
        floor_e, floor_f = roundoff_floor(batch.energies[0], batch.forces[0], precision)
        tol_e = energy_meV_per_atom if energy_meV_per_atom is not None else floor_factor * floor_e
        tol_f = force_meV_per_A if force_meV_per_A is not None else floor_factor * floor_f
        sizes = {"rotation": (1000 * np.abs(batch.energies[1:m + 1] - batch.energies[0]).max() / n,
                              1000 * np.abs(batch.forces[1:m + 1] - batch.forces[0]).max())}
        if inversion:
            sizes["inversion"] = (1000 * abs(np.mean(batch.energies[1:m + 1] - batch.energies[m + 1:])) / n,
                                  1000 * np.abs(np.mean(batch.forces[1:m + 1] - batch.forces[m + 1:], axis=0)).max())
        for channel, (energy, force) in sizes.items():
            if energy > tol_e:
                failures.append(f"{label}: {channel} breaking of the energy {energy:.3g} meV/atom > tolerance {tol_e:.3g} meV/atom")
            if force > tol_f:
                failures.append(f"{label}: {channel} breaking of the forces {force:.3g} meV/Å > tolerance {tol_f:.3g} meV/Å")
    if failures:
        raise AssertionError(f"{getattr(model, 'name', type(model).__name__)} is not invariant:\n" + "\n".join(failures))


def _check_some_chiral(structures: list[Atoms]) -> None:
    from symprobe.audit.mirror import why_no_inversion_signal

    reasons = [why_no_inversion_signal(atoms) for atoms in structures]
    if all(reason is not None for reason in reasons):
        named = "; ".join(f"{structure_label(a, k)}: {r}" for k, (a, r) in enumerate(zip(structures[:3], reasons)))
        raise ValueError(f"assert_invariant: inversion=True, but no structure can show inversion breaking ({named}); "
                         "add a chiral one (e.g. symprobe.bench.builtin_set(['CHFClBr'])) or pass inversion=False")


def _proper_rotations(rotations: int | str, seed: int) -> np.ndarray:
    if isinstance(rotations, (int, np.integer)) and not isinstance(rotations, bool):
        if rotations < 1:
            raise ValueError(f"assert_invariant: need at least one rotation, got {rotations}")
        return so3.haar_rotations(int(rotations), np.random.default_rng(seed))
    grid = so3.get(rotations)
    return grid.rotations[np.linalg.det(grid.rotations) > 0]
