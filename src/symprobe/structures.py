"""Structures: reading files, checking input, and the built-in water structures.

Every check raises :class:`StructureError` with a message that names the structure and the problem.
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
from ase import Atoms
from ase.data import chemical_symbols

MIN_DISTANCE = 0.5  # Å; closer atoms are rejected as overlapping


class StructureError(ValueError):
    """A structure that cannot be used: the message names it and says why."""


def structure_label(atoms: Atoms, index: int | None = None) -> str:
    """A short human-readable name: ``info['name']`` if set, else 'structure #i (formula)'."""
    name = atoms.info.get("name")
    if name:
        return str(name)
    where = f"structure #{index}" if index is not None else "structure"
    return f"{where} ({atoms.get_chemical_formula()})"


def check_structure(atoms: Atoms, label: str | None = None, species: Iterable[int] | None = None) -> None:
    """Raise :class:`StructureError` for an empty structure, NaN/inf positions or cell, atoms closer than
    ``MIN_DISTANCE`` Å, or atomic numbers outside ``species`` (when given)."""
    if len(atoms) == 0:
        raise StructureError(f"{label or structure_label(atoms)}: the structure is empty (no atoms)")
    positions = atoms.get_positions()
    if not np.all(np.isfinite(positions)):
        bad = np.where(~np.isfinite(positions).all(axis=1))[0]
        raise StructureError(f"{label or structure_label(atoms)}: positions of atoms {bad[:10].tolist()} are NaN or infinite")
    if atoms.pbc.any() and not np.all(np.isfinite(atoms.cell.array)):
        raise StructureError(f"{label or structure_label(atoms)}: the cell contains NaN or infinite values")
    if atoms.pbc.any() and abs(atoms.cell.volume) < 1e-6:
        raise StructureError(f"{label or structure_label(atoms)}: periodic structure with a zero-volume cell")
    if species is not None:
        allowed = set(int(z) for z in species)
        unknown = sorted(set(int(z) for z in atoms.numbers) - allowed)
        if unknown:
            names = ", ".join(chemical_symbols[z] for z in unknown)
            known = ", ".join(chemical_symbols[z] for z in sorted(allowed))
            raise StructureError(f"{label or structure_label(atoms)}: unknown species {names} for this model (it knows {known})")
    if len(atoms) > 1:
        i, j, d = _close_pairs(atoms, MIN_DISTANCE)
        if len(d):
            k = int(np.argmin(d))
            raise StructureError(
                f"{label or structure_label(atoms)}: atoms {int(i[k])} and {int(j[k])} are {d[k]:.3f} Å apart "
                f"(closer than {MIN_DISTANCE} Å: overlapping atoms)"
            )


def _close_pairs(atoms: Atoms, cutoff: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from vesin import NeighborList

    box, periodic = neighbour_box(atoms)
    # vesin's cell list has bins of the cutoff's size: below 1 Å a liquid cell has thousands of them (2.4 ms
    # for 192 atoms at 0.5 Å against 0.3 ms at 1 Å), so pairs are searched within 1 Å and then filtered
    calculator = NeighborList(cutoff=max(cutoff, 1.0), full_list=False)
    i, j, d = calculator.compute(atoms.get_positions(), box, periodic, quantities="ijd")
    close = d < cutoff
    return i[close], j[close], d[close]


def neighbour_box(atoms: Atoms) -> tuple[np.ndarray, bool]:
    """The (box, periodic) pair vesin expects: zero box for non-periodic structures.

    Mixed periodicity is refused: symprobe handles fully periodic or fully isolated systems.
    """
    if atoms.pbc.all():
        return np.asarray(atoms.cell.array, dtype=np.float64), True
    if not atoms.pbc.any():
        return np.zeros((3, 3)), False
    raise StructureError(f"{structure_label(atoms)}: mixed periodic boundary conditions {atoms.pbc.tolist()} are not supported")


def read_structures(path: str | Path, index: str = ":") -> list[Atoms]:
    """Read structures with ASE; raise :class:`StructureError` naming the file if it cannot be read."""
    from ase.io import read

    path = Path(path)
    if not path.exists():
        raise StructureError(f"{path}: no such file")
    try:
        frames = read(path, index=index)
    except (StopIteration, IndexError) as error:  # ASE's words for an index past the end
        raise StructureError(f"{path}: index {index} is out of range: the file holds {_count(path)} structures") from error
    except Exception as error:  # ASE raises many types for malformed files
        raise StructureError(f"{path}: cannot read structures ({type(error).__name__}: {error})") from error
    frames = frames if isinstance(frames, list) else [frames]
    if not frames:
        held = _count(path)
        raise StructureError(f"{path}: the file holds no structures" if not held else
                             f"{path}: index {index} selects none of its {held} structures")
    for k, atoms in enumerate(frames):
        atoms.info.setdefault("name", f"{path.name}#{k}")
    return frames


def _count(path: Path) -> int:
    """How many structures the file at ``path`` holds (0 when it cannot be read)."""
    from ase.io import iread

    try:
        return sum(1 for _ in iread(path, index=":"))
    except Exception:  # noqa: BLE001 - a malformed file (ASE raises many types): the caller's message says what was asked
        return 0


def reference_labels(atoms: Atoms) -> tuple[float | None, np.ndarray | None]:
    """Reference energy (eV) and forces (eV/Å) stored with a structure (calculator results or info/arrays)."""
    energy = forces = None
    calc = atoms.calc
    if calc is not None and hasattr(calc, "results"):
        energy = calc.results.get("energy")
        forces = calc.results.get("forces")
    energy = atoms.info.get("energy", energy)
    forces = atoms.arrays.get("forces", forces)
    return (None if energy is None else float(energy)), (None if forces is None else np.asarray(forces, dtype=np.float64))


# ---------------------------------------------------------------------------------------------------
# Built-in water structures (no files needed)

WATER_OH = 0.9572  # Å, experimental gas-phase O–H length
WATER_HOH = np.deg2rad(104.52)


def water_monomer(box: float = 100.0) -> Atoms:
    """One H2O at the centre of a non-periodic ``box`` Å cell (as in the paper's gas-phase runs)."""
    half = WATER_HOH / 2
    positions = np.array(
        [[0.0, 0.0, 0.0], [WATER_OH * np.sin(half), 0.0, WATER_OH * np.cos(half)], [-WATER_OH * np.sin(half), 0.0, WATER_OH * np.cos(half)]]
    )
    atoms = Atoms("OH2", positions=positions + box / 2, cell=np.eye(3) * box, pbc=False)
    atoms.info["name"] = "water monomer"
    return atoms


def density_g_cm3(atoms: Atoms) -> float:
    """Mass density of a periodic cell in g/cm³ (ASE masses in amu, volume in Å³)."""
    return float(atoms.get_masses().sum() / 6.02214076e23 / atoms.get_volume() * 1e24)


def water_box(n_per_side: int = 4, density: float = 0.997, seed: int = 0) -> Atoms:
    """``n_per_side``³ rigid H2O on a cubic lattice with random orientations, periodic, at ``density`` g/cm³.

    A crude but valid liquid-like start (nearest O–O ≈ 3.1 Å at 1 g/cm³); equilibrate before sampling.
    """
    rng = np.random.default_rng(seed)
    n = n_per_side**3
    mass = n * 18.01528 / 6.02214076e23  # g
    length = (mass / density * 1e24) ** (1 / 3)  # Å
    spacing = length / n_per_side
    monomer = water_monomer(0.0).get_positions()
    from symprobe.so3 import haar_rotations

    orientations = haar_rotations(n, rng)
    grid = np.stack(np.meshgrid(*[np.arange(n_per_side)] * 3, indexing="ij"), -1).reshape(-1, 3)
    positions = [(monomer - monomer[0]) @ R.T + (g + 0.5) * spacing for R, g in zip(orientations, grid)]
    atoms = Atoms("OH2" * n, positions=np.concatenate(positions), cell=np.eye(3) * length, pbc=True)
    atoms.info["name"] = f"water box {n} H2O"
    return atoms


def builtin_structures() -> list[Atoms]:
    """The structures the demo audits when no file is given: a monomer and a 64-molecule box."""
    return [water_monomer(), water_box(4, seed=0)]


def shared_data_dir() -> Path | None:
    """``../shared/data`` beside the checkout (CI layout), or ``$SYMPROBE_DATA``, if present."""
    import os

    candidates = [os.environ.get("SYMPROBE_DATA")] if os.environ.get("SYMPROBE_DATA") else []
    here = Path(__file__).resolve()
    candidates += [str(p / "shared" / "data") for p in here.parents]
    for candidate in candidates:
        if candidate and Path(candidate, "README.md").exists():
            return Path(candidate)
    return None


def rotate(atoms: Atoms, rotation: np.ndarray) -> Atoms:
    """A copy of ``atoms`` with positions and cell mapped by x → R x (R may be improper). For an improper R the cell
    vectors are negated as well, which spans the same lattice: the cell stays right-handed, as codes that take the
    volume as det(cell) need for the sign of their stress (CHGNet: a cell averaged with inversion had no stress)."""
    rotation = np.asarray(rotation)
    rotated = atoms.copy()
    rotated.calc = None
    rotated.set_positions(atoms.get_positions() @ rotation.T)
    if atoms.pbc.any():
        rotated.set_cell(np.sign(np.linalg.det(rotation)) * atoms.cell.array @ rotation.T, scale_atoms=False)
    return rotated
