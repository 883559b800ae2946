"""The bench's built-in structures, built with ASE (nothing downloaded): molecules, water and rattled crystals."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
from ase import Atoms
from ase.build import bulk, graphene, molecule

from symprobe.structures import water_box

RATTLE_A = 0.05  # Å, crystals
ICE_A, ICE_C = 4.52, 7.36  # Å, hexagonal ice Ih cell
OH = 0.96  # Å


def _rattled(atoms: Atoms, seed: int) -> Atoms:
    atoms.rattle(stdev=RATTLE_A, seed=seed)
    return atoms


def ice_ih(repeat: tuple[int, int, int] = (2, 2, 2)) -> Atoms:
    """A proton-ordered ice Ih cell: O on the hexagonal-diamond lattice (a = 4.52 Å, c = 7.36 Å), then each O–O
    bond given one H at ``OH`` Å from its donor, the donors chosen along an Euler circuit of the periodic bond
    graph, so every O donates two H and accepts two (the ice rules)."""
    from ase.neighborlist import neighbor_list

    fractional = [(1 / 3, 2 / 3, 1 / 16), (2 / 3, 1 / 3, 9 / 16), (2 / 3, 1 / 3, 15 / 16), (1 / 3, 2 / 3, 7 / 16)]
    oxygens = Atoms("O4", scaled_positions=fractional, cell=[(ICE_A, 0, 0), (-ICE_A / 2, ICE_A * 3**0.5 / 2, 0), (0, 0, ICE_C)],
                    pbc=True).repeat(repeat)
    i, j, d = neighbor_list("ijD", oxygens, 3.0)
    bonds = [(a, b, vector) for a, b, vector in zip(i, j, d) if a < b]
    hydrogens = [oxygens.positions[a] + OH * vector / np.linalg.norm(vector) for a, b, vector in
                 (_oriented(bond, donor) for bond, donor in zip(bonds, euler_orientation(len(oxygens), [(a, b) for a, b, _ in bonds])))]
    atoms = Atoms("O" * len(oxygens) + "H" * len(hydrogens), positions=np.vstack([oxygens.positions, hydrogens]),
                  cell=oxygens.cell, pbc=True)
    owner, hydrogen = _donor_of(atoms, len(oxygens)), np.arange(len(atoms)) >= len(oxygens)
    order = np.concatenate([[o, *np.where(hydrogen & (owner == o))[0]] for o in range(len(oxygens))])
    ordered = atoms[order]
    ordered.wrap()
    return ordered


def _oriented(bond: tuple[int, int, np.ndarray], donor: int) -> tuple[int, int, np.ndarray]:
    a, b, vector = bond
    return (a, b, vector) if donor == a else (b, a, -vector)


def _donor_of(atoms: Atoms, n_oxygens: int) -> np.ndarray:
    """For each atom: the O it belongs to (the nearest O, minimum image); O atoms map to themselves."""
    distances = atoms.get_all_distances(mic=True)[:, :n_oxygens]
    return np.argmin(distances, axis=1)


def euler_orientation(n_vertices: int, edges: Sequence[tuple[int, int]]) -> list[int]:
    """The tail (first vertex) of each edge when a connected graph whose degrees are all even is walked along
    an Euler circuit (Hierholzer): every vertex then has as many edges leaving as entering."""
    incident: list[list[int]] = [[] for _ in range(n_vertices)]
    for k, (a, b) in enumerate(edges):
        incident[a].append(k)
        incident[b].append(k)
    if any(len(e) % 2 for e in incident):
        raise ValueError("euler_orientation: a vertex has odd degree")
    used, tails = [False] * len(edges), [-1] * len(edges)
    stack, position = [edges[0][0]], [0] * n_vertices
    while stack:
        v = stack[-1]
        while position[v] < len(incident[v]) and used[incident[v][position[v]]]:
            position[v] += 1
        if position[v] == len(incident[v]):
            stack.pop()
            continue
        k = incident[v][position[v]]
        used[k], tails[k] = True, v
        a, b = edges[k]
        stack.append(b if v == a else a)
    if not all(used):
        raise ValueError("euler_orientation: the graph is not connected")
    return tails


BUILDERS: dict[str, Callable[[], Atoms]] = {
    "H2O": lambda: molecule("H2O"),
    "CH4": lambda: molecule("CH4"),
    "NH3": lambda: molecule("NH3"),
    "benzene": lambda: molecule("C6H6"),
    "SO2": lambda: molecule("SO2"),
    "ethanol": lambda: molecule("CH3CH2OH"),
    "water liquid": lambda: water_box(3, seed=0),
    "ice Ih": ice_ih,
    "Si diamond": lambda: _rattled(bulk("Si", "diamond", a=5.431, cubic=True), 1),
    "Al fcc": lambda: _rattled(bulk("Al", "fcc", a=4.05, cubic=True), 2),
    "Fe bcc": lambda: _rattled(bulk("Fe", "bcc", a=2.87, cubic=True).repeat(2), 3),
    "NaCl rocksalt": lambda: _rattled(bulk("NaCl", "rocksalt", a=5.64, cubic=True), 4),
    "ZnO wurtzite": lambda: _rattled(bulk("ZnO", "wurtzite", a=3.25, c=5.21).repeat((2, 2, 1)), 5),
    "graphene": lambda: _graphene(),
}


def _graphene() -> Atoms:
    sheet = graphene(formula="C2", a=2.46, vacuum=10.0).repeat((3, 3, 1))
    sheet.pbc = True  # 20 Å of vacuum between the periodic images
    return _rattled(sheet, 6)


def builtin_set(names: Sequence[str] | None = None) -> dict[str, Atoms]:
    """The built-in structures by name (all, or ``names``); each carries ``info['name']``."""
    unknown = sorted(set(names or ()) - set(BUILDERS))
    if unknown:
        raise ValueError(f"unknown bench structure(s) {', '.join(unknown)} (known: {', '.join(BUILDERS)})")
    out = {}
    for name in names or BUILDERS:
        atoms = BUILDERS[name]()
        atoms.info["name"] = name
        out[name] = atoms
    return out


