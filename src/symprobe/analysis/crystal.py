"""Symmetry of crystals: the space group a relaxation ends in, the displacement that breaks a reference's
symmetry, the crystal's point group as a rotation rule to average a model over, and frequencies at Γ with the
splitting of modes that symmetry makes degenerate.

Lengths in Å, frequencies in cm⁻¹ (imaginary ones negative), tolerances ``symprec`` in Å as in spglib.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
from ase import Atoms, units

from symprobe import so3

SPGLIB_DEFAULT = 1e-5  # Å, spglib's own default symprec
TOLERANCES = {"loose": 1e-3, "default": SPGLIB_DEFAULT, "tight": 1e-6}  # Å: spglib's symprec of :func:`space_groups`
TO_CM = units._hbar * 1e10 / np.sqrt(units._e * units._amu) / units.invcm  # √(eV/Å²/amu) → cm⁻¹
DEGENERATE_CM = 0.5  # cm⁻¹: reference modes closer than this form one degenerate set


def _cell(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.asarray(atoms.cell.array), atoms.get_scaled_positions(), atoms.numbers


def space_group(atoms: Atoms, symprec: float = SPGLIB_DEFAULT) -> str:
    """spglib's international symbol and number, e.g. 'Fm-3m (225)'."""
    import spglib

    return str(spglib.get_spacegroup(_cell(atoms), symprec=symprec))


def space_groups(atoms: Atoms) -> dict[str, str]:
    """spglib's space group of ``atoms`` at each tolerance of :data:`TOLERANCES`, by its label (loose, default, tight)."""
    return {label: space_group(atoms, symprec) for label, symprec in TOLERANCES.items()}


def symmetrised(atoms: Atoms, symprec: float = TOLERANCES["loose"]) -> Atoms:
    """A copy of ``atoms`` (no calculator) made exactly symmetric under the space group spglib finds at ``symprec``
    Å: ASE's ``refine_symmetry`` projects cell and positions, keeping the orientation and the order of the atoms."""
    from ase.spacegroup.symmetrize import refine_symmetry

    out = atoms.copy()
    out.calc = None
    refine_symmetry(out, symprec=symprec)
    return out


def _operations(reference: Atoms, symprec: float) -> tuple[np.ndarray, np.ndarray, list[list[int]]]:
    """spglib's operations of ``reference``: fractional rotations W (G, 3, 3), translations t (G, 3), and for each
    operation the atom it sends each atom i to."""
    import spglib

    operations = spglib.get_symmetry(_cell(reference), symprec=symprec) or {"rotations": np.eye(3, dtype=int)[None],
                                                                            "translations": np.zeros((1, 3))}
    ref = reference.get_scaled_positions()
    images = []
    for W, t in zip(operations["rotations"], operations["translations"]):
        image = ref @ W.T + t
        images.append([int(np.argmin(np.linalg.norm((image[i] - ref + 0.5) % 1 - 0.5, axis=1))) for i in range(len(ref))])
    return operations["rotations"], operations["translations"], images


def _cartesian(W: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """The Cartesian rotations (x → R x) of fractional rotations ``W`` (…, 3, 3) of a cell with rows ``cell``:
    R = Aᵀ W A⁻ᵀ, made exactly orthogonal (the nearest orthogonal matrix)."""
    R = cell.T @ W @ np.linalg.inv(cell.T)
    U, _, Vt = np.linalg.svd(R)
    return U @ Vt


def symmetry_residual(atoms: Atoms, reference: Atoms, symprec: float = SPGLIB_DEFAULT) -> float:
    """RMS displacement (Å) of ``atoms`` from its projection onto the symmetry operations of ``reference`` (same
    atoms in the same order), after removing the rigid shift: the part of the structure that breaks the reference's
    space group. The operations act on fractional coordinates of ``atoms``' own cell; each maps atom i to the
    reference's image atom."""
    rotations, translations, images = _operations(reference, symprec)
    frac, ref = atoms.get_scaled_positions(wrap=False), reference.get_scaled_positions()
    frac = frac - np.mean((frac - ref + 0.5) % 1 - 0.5, axis=0)  # a rigid shift of the whole crystal breaks nothing
    projected = np.zeros_like(frac)
    for W, t, target in zip(rotations, translations, images):
        moved = frac @ W.T + t
        for i, j in enumerate(target):
            projected[j] += moved[i] - np.round(moved[i] - frac[j])
    projected /= len(rotations)
    return float(np.sqrt(np.mean(np.sum(((frac - projected) @ atoms.cell.array) ** 2, axis=1))))


def point_group(reference: Atoms, symprec: float = SPGLIB_DEFAULT) -> so3.Quadrature:
    """The point group of ``reference``'s space group as a rotation rule in its Cartesian frame: each distinct
    rotation of the operations (:func:`_cartesian`), equal weights, named by its Hermann–Mauguin symbol. A model
    averaged over it is invariant under every operation of the space group (models ignore translations), so a
    relaxation with it keeps the space group whatever the model's breaking."""
    import spglib

    rotations = np.unique(_operations(reference, symprec)[0], axis=0)
    dataset = spglib.get_symmetry_dataset(_cell(reference), symprec=symprec)
    symbol = "1" if dataset is None else dataset.pointgroup
    rule = so3.Quadrature(f"point group {symbol}", _cartesian(rotations, reference.cell.array),
                          np.full(len(rotations), 1.0 / len(rotations)), 0)
    return dataclasses.replace(rule, degree=max(so3.measured_degree(rule), 0))


def cell_residual(atoms: Atoms, reference: Atoms, symprec: float = SPGLIB_DEFAULT) -> float:
    """The strain (dimensionless, largest component) that separates ``atoms``' cell from its projection onto the
    point operations of ``reference``: the metric G = A Aᵀ (rows of A: cell vectors) averaged as Wᵀ G W over the
    operations W (fractional)."""
    rotations = _operations(reference, symprec)[0]
    metric = atoms.cell.array @ atoms.cell.array.T
    projected = np.mean([W.T @ metric @ W for W in rotations], axis=0)
    return float(np.abs(metric - projected).max() / (2 * np.mean(np.diag(projected))))


def relax_crystal(atoms: Atoms, calculator, fmax: float, steps: int = 20000, optimizer: str = "FIRE") -> tuple[Atoms, int, bool]:
    """(relaxed copy, steps, converged): positions and cell of ``atoms`` relaxed with ``calculator`` (ASE's
    FrechetCellFilter and its ``optimizer``, FIRE or BFGS) until every force is below ``fmax`` eV/Å and every
    component of stress × volume / number of atoms below ``fmax`` eV (the filter's generalised force on the cell).
    BFGS reaches tight targets in far fewer steps on cells of tens of atoms."""
    from ase.filters import FrechetCellFilter
    from ase.optimize import BFGS, FIRE

    optimizers = {"FIRE": FIRE, "BFGS": BFGS}
    if optimizer not in optimizers:
        raise ValueError(f"unknown optimizer {optimizer!r} (known: {', '.join(optimizers)})")
    atoms = atoms.copy()
    atoms.calc = calculator
    run = optimizers[optimizer](FrechetCellFilter(atoms), logfile=None)
    converged = bool(run.run(fmax=fmax, steps=steps))
    return atoms, int(run.get_number_of_steps()), converged


def gamma_hessian(atoms: Atoms, delta: float = 0.01) -> np.ndarray:
    """The (3N, 3N) force-constant matrix at Γ of the periodic cell (eV/Å², symmetrised) from four-point central
    differences (±``delta``, ±2 ``delta`` Å, as ASE's Vibrations with nfree=4) of the forces of ``atoms.calc``. All
    12 N displaced cells go to the model in one batched call when the calculator is a symprobe model's
    (:meth:`~symprobe.models.base.Model.as_calculator`: a grid average's copies of every cell share its passes);
    any other calculator is called cell by cell."""
    from symprobe.models.base import CalculatorModel, ModelCalculator

    model = atoms.calc.model if isinstance(atoms.calc, ModelCalculator) else CalculatorModel(atoms.calc)
    n = 3 * len(atoms)
    steps, weights = (2, 1, -1, -2), np.array([-1.0, 8.0, -8.0, 1.0]) / (12 * delta)  # dF/dx from F(x + s δ)
    displaced = []
    for k in range(n):
        for step in steps:
            moved = atoms.copy()
            moved.calc = None
            moved.positions[k // 3, k % 3] += step * delta
            displaced.append(moved)
    forces = np.array([batch.forces[0].ravel() for batch in model.predict_many(displaced)]).reshape(n, len(steps), n)
    hessian = -np.einsum("s,ksa->ka", weights, forces)
    return 0.5 * (hessian + hessian.T)


def normal_modes(hessian: np.ndarray, masses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ω² (eV/Å²/amu, ascending) and columns of eigenvectors of the mass-weighted ``hessian``
    (eV/Å²; ``masses`` per atom, amu)."""
    return np.linalg.eigh(mass_weighted(hessian, masses))


def mass_weighted(hessian: np.ndarray, masses: np.ndarray) -> np.ndarray:
    """The mass-weighted ``hessian`` (eV/Å²/amu; ``masses`` per atom, amu), H_ab / √(m_a m_b)."""
    mass = np.repeat(masses, 3)
    return hessian / np.sqrt(np.outer(mass, mass))


def to_wavenumber(omega2: np.ndarray) -> np.ndarray:
    """ω² in eV/Å²/amu to frequencies in cm⁻¹ (imaginary ones negative)."""
    return np.sign(omega2) * np.sqrt(np.abs(omega2)) * TO_CM


def gamma_frequencies(atoms: Atoms, delta: float = 0.01) -> np.ndarray:
    """Frequencies at Γ of the periodic cell (cm⁻¹, ascending, imaginary as negative) of ``atoms.calc``."""
    return to_wavenumber(normal_modes(gamma_hessian(atoms, delta), atoms.get_masses())[0])


def degenerate_sets(reference: np.ndarray, tolerance: float = DEGENERATE_CM, floor: float = 5.0) -> list[list[int]]:
    """Indices of the reference frequencies (sorted) that form degenerate sets of two or more, above ``floor``
    cm⁻¹ (the acoustic modes at Γ are left out)."""
    return [s for s in _close_runs(reference, tolerance) if len(s) > 1 and reference[s[0]] > floor]


def _close_runs(values: np.ndarray, tolerance: float) -> list[list[int]]:
    """Indices of ascending ``values`` in runs whose neighbours differ by less than ``tolerance``."""
    runs, current = [], [0]
    for k in range(1, len(values)):
        if values[k] - values[k - 1] < tolerance:
            current.append(k)
        else:
            runs.append(current)
            current = [k]
    runs.append(current)
    return runs


def splittings(frequencies: np.ndarray, sets: list[list[int]]) -> list[float]:
    """The spread (max − min, cm⁻¹) of ``frequencies`` over each degenerate set of the reference."""
    return [float(frequencies[s].max() - frequencies[s].min()) for s in sets]


def gamma_operations(reference: Atoms, symprec: float = SPGLIB_DEFAULT) -> list[tuple[np.ndarray, np.ndarray]]:
    """How each operation of ``reference``'s space group acts on displacements at Γ, as (R, target): the displacement
    u of atom i becomes R u on atom target[i] (R Cartesian; pure translations included, as permutations)."""
    rotations, _, images = _operations(reference, symprec)
    return [(R, np.asarray(target)) for R, target in zip(_cartesian(rotations, reference.cell.array), images)]


def symmetric_sets(hessian: np.ndarray, masses: np.ndarray, operations: list[tuple[np.ndarray, np.ndarray]],
                   floor: float = 5.0, relative_tolerance: float = 1e-8) -> list[dict[str, Any]]:
    """The Γ modes that the group of ``operations`` (:func:`gamma_operations`) makes degenerate, and how far
    ``hessian`` (eV/Å², finite differences, at a structure near the symmetric one) splits them.

    The group average of the mass-weighted Hessian, (1/G) Σ_g Γ_g D Γ_gᵀ, commutes with every operation: its
    eigenspaces of two or more modes, above ``floor`` cm⁻¹ (the acoustic modes left out), are the degenerate sets
    (eigenvalues equal to ``relative_tolerance`` of the largest). Per set: ``modes``, the symmetric frequency
    ``frequency_cm`` (cm⁻¹), the frequencies of D within the set ``frequencies_cm`` (the eigenvalues of Vᵀ D V for
    the set's modes V: first order in the breaking) and their spread ``splitting_cm``."""
    dynamical = mass_weighted(0.5 * (hessian + hessian.T), masses)
    omega2, modes = np.linalg.eigh(_group_average(dynamical, operations))
    out = []
    for group in _close_runs(omega2, relative_tolerance * np.abs(omega2).max()):
        frequency = float(to_wavenumber(np.mean(omega2[group])))
        if len(group) < 2 or abs(frequency) < floor:
            continue
        V = modes[:, group]
        within = to_wavenumber(np.linalg.eigvalsh(V.T @ dynamical @ V))
        out.append({"modes": len(group), "frequency_cm": frequency, "frequencies_cm": within.tolist(),
                    "splitting_cm": float(within.max() - within.min())})
    return out


def _group_average(matrix: np.ndarray, operations: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """(1/G) Σ_g Γ_g M Γ_gᵀ of a symmetric (3N, 3N) ``matrix``, Γ_g the action of :func:`gamma_operations` (block (a, b)
    of M, rotated as R M_ab Rᵀ, moves to block (target[a], target[b]))."""
    n = len(matrix) // 3
    blocks = matrix.reshape(n, 3, n, 3)
    out = np.zeros_like(blocks)
    for R, target in operations:
        source = np.argsort(target)  # the atom each atom's block comes from
        out += np.einsum("ij,ajbk,lk->aibl", R, blocks, R)[source][:, :, source]
    out = out.reshape(3 * n, 3 * n) / len(operations)
    return 0.5 * (out + out.T)
