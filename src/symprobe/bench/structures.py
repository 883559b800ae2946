"""The bench's built-in structures, built with ASE and GenIce2 (nothing downloaded): molecules, water and rattled crystals."""

from __future__ import annotations

from typing import Callable, Sequence

from ase import Atoms
from ase.build import bulk, graphene, molecule

from symprobe.structures import water_box
from symprobe.study.ice import genice_cell

RATTLE_A = 0.05  # Å, crystals


def _rattled(atoms: Atoms, seed: int) -> Atoms:
    atoms.rattle(stdev=RATTLE_A, seed=seed)
    return atoms


BUILDERS: dict[str, Callable[[], Atoms]] = {
    "H2O": lambda: molecule("H2O"),
    "CH4": lambda: molecule("CH4"),
    "NH3": lambda: molecule("NH3"),
    "benzene": lambda: molecule("C6H6"),
    "SO2": lambda: molecule("SO2"),
    "ethanol": lambda: molecule("CH3CH2OH"),
    "water-liquid": lambda: water_box(3, seed=0),
    "ice-Ih": lambda: genice_cell(0),
    "Si-diamond": lambda: _rattled(bulk("Si", "diamond", a=5.431, cubic=True), 1),
    "Al-fcc": lambda: _rattled(bulk("Al", "fcc", a=4.05, cubic=True), 2),
    "Fe-bcc": lambda: _rattled(bulk("Fe", "bcc", a=2.87, cubic=True).repeat(2), 3),
    "NaCl-rocksalt": lambda: _rattled(bulk("NaCl", "rocksalt", a=5.64, cubic=True), 4),
    "ZnO-wurtzite": lambda: _rattled(bulk("ZnO", "wurtzite", a=3.25, c=5.21).repeat((2, 2, 1)), 5),
    "graphene": lambda: _graphene(),
}


def _graphene() -> Atoms:
    sheet = graphene(formula="C2", a=2.46, vacuum=10.0).repeat((3, 3, 1))
    sheet.pbc = True  # 20 Å of vacuum between the periodic images
    return _rattled(sheet, 6)


def builtin_set(names: Sequence[str] | None = None) -> dict[str, Atoms]:
    """The built-in structures by name (all, or ``names``; a space reads as '-', as in earlier names such as 'water liquid'); each
    carries ``info['name']``."""
    names = None if names is None else [name.strip().replace(" ", "-") for name in names]
    unknown = sorted(set(names or ()) - set(BUILDERS))
    if unknown:
        raise ValueError(f"unknown bench structure(s) {', '.join(unknown)} (known: {', '.join(BUILDERS)})")
    out = {}
    for name in names or BUILDERS:
        atoms = BUILDERS[name]()
        atoms.info["name"] = name
        out[name] = atoms
    return out


