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
    "CHFClBr": lambda: _chfclbr(),
    "alpha-quartz": lambda: _rattled(_alpha_quartz(), 7),
}


def _chfclbr() -> Atoms:
    """Bromochlorofluoromethane, the smallest chiral molecule (one enantiomer; bond lengths in Å on a regular
    tetrahedron of bond directions): it can show inversion breaking, which achiral molecules cannot."""
    import numpy as np

    directions = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=float) / np.sqrt(3)
    lengths = np.array([1.09, 1.35, 1.77, 1.94])  # C–H, C–F, C–Cl, C–Br
    return Atoms("CHFClBr", positions=np.vstack([np.zeros(3), directions * lengths[:, None]]))


def _alpha_quartz() -> Atoms:
    """α-quartz, P3₂21 (no. 154): a chiral crystal whose mirror image is its enantiomorph (P3₁21); Levien et al.,
    Am. Mineral. 65, 920 (1980): a = 4.9160 Å, c = 5.4054 Å, Si (0.4697, 0, 0), O (0.4135, 0.2669, 0.1191), shifted by
    2/3 along c into the International Tables' origin (Si on Wyckoff 3a, x 0 2/3): 9 atoms, Si–O 1.605 and 1.614 Å."""
    from ase.spacegroup import crystal

    return crystal(["Si", "O"], basis=[(0.4697, 0.0, 2.0 / 3.0), (0.4135, 0.2669, 0.1191 + 2.0 / 3.0)], spacegroup=154,
                   cellpar=[4.916, 4.916, 5.4054, 90, 90, 120])


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


