"""Symmetry of crystals: the space group a relaxation ends in, the displacement that breaks a reference's
symmetry, and frequencies at Γ with the splitting of modes that symmetry makes degenerate.

Lengths in Å, frequencies in cm⁻¹ (imaginary ones negative), tolerances ``symprec`` in Å as in spglib.
"""

from __future__ import annotations

import tempfile

import numpy as np
from ase import Atoms, units

SPGLIB_DEFAULT = 1e-5  # Å, spglib's own default symprec
TO_CM = units._hbar * 1e10 / np.sqrt(units._e * units._amu) / units.invcm  # √(eV/Å²/amu) → cm⁻¹
DEGENERATE_CM = 0.5  # cm⁻¹: reference modes closer than this form one degenerate set


def _cell(atoms: Atoms) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return np.asarray(atoms.cell.array), atoms.get_scaled_positions(), atoms.numbers


def space_group(atoms: Atoms, symprec: float = SPGLIB_DEFAULT) -> str:
    """spglib's international symbol and number, e.g. 'Fm-3m (225)'."""
    import spglib

    return str(spglib.get_spacegroup(_cell(atoms), symprec=symprec))


def symmetry_residual(atoms: Atoms, reference: Atoms, symprec: float = SPGLIB_DEFAULT) -> float:
    """RMS displacement (Å) of ``atoms`` from its projection onto the symmetry operations of ``reference`` (same
    atoms in the same order), after removing the rigid shift: the part of the structure that breaks the reference's
    space group. The operations act on fractional coordinates of ``atoms``' own cell; each maps atom i to the
    reference's image atom."""
    import spglib

    operations = spglib.get_symmetry(_cell(reference), symprec=symprec)
    frac, ref = atoms.get_scaled_positions(wrap=False), reference.get_scaled_positions()
    frac = frac - np.mean((frac - ref + 0.5) % 1 - 0.5, axis=0)  # a rigid shift of the whole crystal breaks nothing
    projected = np.zeros_like(frac)
    for W, t in zip(operations["rotations"], operations["translations"]):
        image = ref @ W.T + t  # where the operation sends each reference atom
        target = [int(np.argmin(np.linalg.norm((image[i] - ref + 0.5) % 1 - 0.5, axis=1))) for i in range(len(ref))]
        moved = frac @ W.T + t
        for i, j in enumerate(target):
            projected[j] += moved[i] - np.round(moved[i] - frac[j])
    projected /= len(operations["rotations"])
    return float(np.sqrt(np.mean(np.sum(((frac - projected) @ atoms.cell.array) ** 2, axis=1))))


def cell_residual(atoms: Atoms, reference: Atoms, symprec: float = SPGLIB_DEFAULT) -> float:
    """The strain (dimensionless, largest component) that separates ``atoms``' cell from its projection onto the
    point operations of ``reference``: the metric G = A Aᵀ (rows of A: cell vectors) averaged as Wᵀ G W over the
    operations W (fractional)."""
    import spglib

    rotations = spglib.get_symmetry(_cell(reference), symprec=symprec)["rotations"]
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
    """The (3N, 3N) force-constant matrix at Γ of the periodic cell (eV/Å²) from central finite differences (four
    points, ``delta`` Å) of the forces of ``atoms.calc`` (ASE's Vibrations)."""
    from ase.vibrations import Vibrations

    with tempfile.TemporaryDirectory() as cache:
        vibrations = Vibrations(atoms, name=f"{cache}/vib", delta=delta, nfree=4)
        vibrations.run()
        return vibrations.get_vibrations().get_hessian_2d()


def normal_modes(hessian: np.ndarray, masses: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigenvalues ω² (eV/Å²/amu, ascending) and columns of eigenvectors of the mass-weighted ``hessian``
    (eV/Å²; ``masses`` per atom, amu)."""
    mass = np.repeat(masses, 3)
    return np.linalg.eigh(hessian / np.sqrt(np.outer(mass, mass)))


def to_wavenumber(omega2: np.ndarray) -> np.ndarray:
    """ω² in eV/Å²/amu to frequencies in cm⁻¹ (imaginary ones negative)."""
    return np.sign(omega2) * np.sqrt(np.abs(omega2)) * TO_CM


def gamma_frequencies(atoms: Atoms, delta: float = 0.01) -> np.ndarray:
    """Frequencies at Γ of the periodic cell (cm⁻¹, ascending, imaginary as negative) of ``atoms.calc``."""
    return to_wavenumber(normal_modes(gamma_hessian(atoms, delta), atoms.get_masses())[0])


def degenerate_sets(reference: np.ndarray, tolerance: float = DEGENERATE_CM, floor: float = 5.0) -> list[list[int]]:
    """Indices of the reference frequencies (sorted) that form degenerate sets of two or more, above ``floor``
    cm⁻¹ (the acoustic modes at Γ are left out)."""
    sets, current = [], [0]
    for k in range(1, len(reference)):
        if reference[k] - reference[k - 1] < tolerance:
            current.append(k)
        else:
            sets.append(current)
            current = [k]
    sets.append(current)
    return [s for s in sets if len(s) > 1 and reference[s[0]] > floor]


def splittings(frequencies: np.ndarray, sets: list[list[int]]) -> list[float]:
    """The spread (max − min, cm⁻¹) of ``frequencies`` over each degenerate set of the reference."""
    return [float(frequencies[s].max() - frequencies[s].min()) for s in sets]
