"""Proton-disordered ice Ih: energies and L-BFGS relaxations with the raw and the grid-averaged model.

The cells are the paper's Hayward–Reimers cells from the shared data (frames 2–10 are the nine the paper
relaxed); without the shared data, GenIce2 (optional extra ``ice``) generates proton-disordered cells, one
seed per requested frame; :func:`ice_cells` says why when neither can be had. Relative energies of proton arrangements are
compared between raw and averaged models against their physical spread (paper: a change of 0.007 meV/H2O
against a spread of 0.32 meV/H2O). :func:`ice_xi_cell` builds proton-ordered ice XI (Cmc2₁) for the crystal
symmetry benchmark.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.study.variants import scalar
from symprobe.models.base import Model
from symprobe.structures import read_structures, shared_data_dir

HAYWARD_REIMERS = "iceIh_proton_disordered_hayward_reimers_11cells.extxyz"
GENICE_REPEAT = (2, 2, 1)  # GenIce2's orthorhombic 16-molecule ice Ih cell → 64 molecules, 15.6 × 14.7 × 9.0 Å


def ice_cells(frames: Sequence[int]) -> tuple[list[Atoms], str]:
    """(cells, description): the Hayward–Reimers cells ``frames`` of the shared data, else one GenIce2 cell per
    entry of ``frames`` (used as seeds); cells is empty and the description gives the reason when neither exists."""
    data = shared_data_dir()
    path = None if data is None else data / "structures" / HAYWARD_REIMERS
    if path is None or not path.exists():
        try:
            cells = [genice_cell(seed) for seed in frames]
        except ImportError:
            return [], ("skipped: the Hayward–Reimers ice cells (shared data structures/" + HAYWARD_REIMERS + ") are not "
                        "present (set SYMPROBE_DATA to the data directory) and GenIce2 is not installed (pip install 'symprobe[ice]')")
        return cells, (f"GenIce2 proton-disordered ice Ih cells ({len(cells[0]) // 3 if cells else 0} H2O, zero net dipole), "
                       f"seeds {list(frames)}; the paper's Hayward–Reimers cells were not found")
    every = read_structures(path)
    cells = []
    for k in frames:
        atoms = every[k].copy()
        atoms.info = {"name": f"Hayward–Reimers cell {k} ({len(atoms) // 3} H2O)"}
        cells.append(atoms)
    return cells, f"Hayward & Reimers (1997) proton-disordered ice Ih cells, frames {list(frames)} of the shared data"


def genice_cell(seed: int) -> Atoms:
    """A proton-disordered ice Ih cell from GenIce2 (64 H2O, Bernal–Fowler rules, zero net polarisation,
    rigid water with O–H 0.9572 Å); ``seed`` picks the proton arrangement."""
    atoms = _genice("1h", {}, GENICE_REPEAT, depol="strict", seed=seed)
    atoms.info = {"name": f"GenIce2 ice Ih, seed {seed} ({len(atoms) // 3} H2O)"}
    return atoms


def ice_xi_cell() -> Atoms:
    """Proton-ordered ice XI, space group Cmc2₁ (36), 16 H2O in an orthorhombic 8.98 × 7.78 × 7.34 Å cell with c
    along z: GenIce2's first ice XI candidate (Hirsch & Ojamäe, J. Phys. Chem. B 108, 15856 (2004), table 1, no. 1),
    its rigid waters (O–H 0.9572 Å) placed on the lattice, then made exactly Cmc2₁ by ASE's ``refine_symmetry``
    (spglib, 1e-3 Å: GenIce2 rounds the placement at 1e-4 Å). Atoms ordered O, H, H per molecule."""
    from ase.spacegroup.symmetrize import refine_symmetry

    atoms = _genice("11i", {"type": 1}, (1, 1, 1), depol="none", seed=0)
    refine_symmetry(atoms, symprec=1e-3)
    atoms.wrap()
    atoms.info = {"name": f"ice XI Cmc2₁ ({len(atoms) // 3} H2O)"}
    return atoms


def _genice(lattice: str, options: dict[str, Any], repeat: tuple[int, int, int], depol: str, seed: int) -> Atoms:
    """GenIce2's ``lattice`` (with its ``options``) × ``repeat`` as periodic Atoms (O, H, H per molecule); GenIce2
    draws from the global random generators, seeded here with ``seed`` and restored afterwards."""
    import logging
    import random

    from genice2.genice import GenIce
    from genice2.plugin import Format, Lattice, Molecule

    numpy_state, python_state = np.random.get_state(), random.getstate()
    np.random.seed(seed)
    random.seed(seed)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        text = GenIce(Lattice(lattice, **options), rep=repeat).generate_ice(Format("exyz"), water=Molecule("physical_water"), depol=depol)
    finally:
        np.random.set_state(numpy_state)
        random.setstate(python_state)
        logging.getLogger().setLevel(level)
    symbols, positions, cell = [], [], []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) == 4 and fields[0] in ("O", "H"):
            symbols.append(fields[0])
            positions.append([float(x) for x in fields[1:]])
        elif len(fields) == 4 and fields[0].startswith("Vector"):
            cell.append([float(x) for x in fields[1:]])
    atoms = Atoms(symbols, positions=positions, cell=cell, pbc=True)
    atoms.wrap()
    return atoms


def relax(model: Model, atoms: Atoms, fmax: float, max_steps: int) -> tuple[Atoms, float, int, float]:
    """L-BFGS relaxation of positions (cell fixed): (relaxed atoms, energy eV, steps, final max force eV/Å)."""
    from ase.optimize import LBFGS

    relaxed = atoms.copy()
    relaxed.calc = model.as_calculator()
    optimizer = LBFGS(relaxed, logfile=None)
    optimizer.run(fmax=fmax, steps=max_steps)
    forces = relaxed.get_forces()
    return relaxed, float(relaxed.get_potential_energy()), int(optimizer.nsteps), float(np.max(np.linalg.norm(forces, axis=1)))


def mean_change(change: np.ndarray) -> dict[str, Any]:
    """Mean |change| of relative energies over cells (meV/H2O) with its standard error; no error from two
    cells, whose relative energies are ±d/2 and so always change by the same amount."""
    error = float(change.std(ddof=1) / np.sqrt(len(change))) if len(change) > 2 else None
    return scalar(float(change.mean()), error, "meV/H2O")


def ice_study(raw: Model, averaged: Model, cells: Sequence[Atoms], fmax: float, max_steps: int,
              grids: Sequence[so3.Quadrature] = (), grid_model: Model | None = None) -> dict[str, Any]:
    """Per cell: raw and averaged energies (meV/H2O) before and after relaxing with each model; relative
    energies between cells (each minus their mean) and how much averaging changes them, both after the two
    relaxations and at identical geometries (the averaged model at the raw-relaxed structures: the model's
    change alone, meaningful also when ``max_steps`` stops the relaxations short of ``fmax``).

    With ``grids`` (the last one the reference), also their convergence: the relative energies of the raw
    model averaged on each grid at the raw-relaxed structures, and their mean absolute change from the
    reference's (meV/H2O), under ``grid_convergence``; evaluated with ``grid_model`` (default ``raw``; the
    changes are small: give the raw model in float64)."""
    return combined_cells([ice_cell(raw, averaged, atoms, fmax, max_steps, grids, grid_model) for atoms in cells], fmax,
                          max_steps, grids)


def ice_cell(raw: Model, averaged: Model, atoms: Atoms, fmax: float, max_steps: int, grids: Sequence[so3.Quadrature] = (),
             grid_model: Model | None = None) -> dict[str, Any]:
    """One cell of :func:`ice_study`: ``{"row": …, "on_grids": …}``, its energies and relaxations (meV/H2O, eV/atom)
    and the energy averaged on each of ``grids`` at the raw-relaxed structure (meV/H2O; empty without grids)."""
    n = len(atoms) // 3
    e_raw = raw.predict(atoms).energy
    e_avg = averaged.predict(atoms).energy
    relaxed_raw, r_raw, steps_raw, f_raw = relax(raw, atoms, fmax, max_steps)
    relaxed_avg, r_avg, steps_avg, f_avg = relax(averaged, atoms, fmax, max_steps)
    same_geometry = averaged.predict(relaxed_raw).energy
    on_grids = []
    if grids:
        energies = (grid_model or raw).predict_rotated(relaxed_raw, np.concatenate([q.rotations for q in grids])).energies
        bounds = np.cumsum([0] + [len(q) for q in grids])
        on_grids = [float(1000 * q.weights @ energies[a:b] / n) for q, a, b in zip(grids, bounds[:-1], bounds[1:])]
    row = {
        "cell": atoms.info["name"], "n_molecules": n, "n_atoms": len(atoms),
        "energy_raw_meV_per_H2O": 1000 * e_raw / n, "energy_averaged_meV_per_H2O": 1000 * e_avg / n,
        "difference_eV_per_atom": (e_raw - e_avg) / len(atoms),
        "relaxed_raw_meV_per_H2O": 1000 * r_raw / n, "relaxed_averaged_meV_per_H2O": 1000 * r_avg / n,
        "averaged_at_raw_relaxed_meV_per_H2O": 1000 * same_geometry / n,
        "relaxation_energy_raw_eV_per_atom": (r_raw - e_raw) / len(atoms),
        "relaxation_energy_averaged_eV_per_atom": (r_avg - e_avg) / len(atoms),
        "relaxation_difference_eV_per_atom": ((r_raw - e_raw) - (r_avg - e_avg)) / len(atoms),
        "steps_raw": steps_raw, "steps_averaged": steps_avg, "fmax_raw": f_raw, "fmax_averaged": f_avg,
    }
    return {"row": row, "on_grids": on_grids}


def combined_cells(cells: Sequence[dict[str, Any]], fmax: float, max_steps: int,
                   grids: Sequence[so3.Quadrature] = ()) -> dict[str, Any]:
    """:func:`ice_study`'s result from its cells (:func:`ice_cell` of each, in order)."""
    rows, on_grids = [cell["row"] for cell in cells], [cell["on_grids"] for cell in cells]
    converged = all(max(r["fmax_raw"], r["fmax_averaged"]) <= fmax for r in rows)
    result: dict[str, Any] = {"fmax_eV_per_A": fmax, "max_steps": max_steps, "converged": converged, "cells": rows}
    if len(rows) >= 2:
        relative = lambda key: np.array([r[key] for r in rows]) - np.mean([r[key] for r in rows])  # noqa: E731
        raw_rel, avg_rel = relative("relaxed_raw_meV_per_H2O"), relative("relaxed_averaged_meV_per_H2O")
        same_rel = relative("averaged_at_raw_relaxed_meV_per_H2O")
        result["relative_raw_meV_per_H2O"] = raw_rel.tolist()
        result["relative_averaged_meV_per_H2O"] = avg_rel.tolist()
        for key, change in (("relative_change", np.abs(raw_rel - avg_rel)),
                            ("relative_change_same_geometry", np.abs(raw_rel - same_rel))):
            result[key] = mean_change(change)
        result["relative_spread"] = scalar(float(avg_rel.std(ddof=1)), None, "meV/H2O")
        if grids:
            relative_on_grids = np.asarray(on_grids) - np.mean(on_grids, axis=0)  # (cells, grids)
            change = np.abs(relative_on_grids - relative_on_grids[:, -1:])
            result["grid_convergence"] = {"reference": grids[-1].name, "rows": [
                {"grid": q.name, "evaluations": len(q), "degree": q.degree,
                 "relative_change": mean_change(change[:, g])}
                for g, q in enumerate(grids)]}
    diffs = np.array([r["difference_eV_per_atom"] for r in rows]) if rows else np.zeros(0)
    if len(diffs):
        result["energy_difference"] = scalar(float(np.mean(np.abs(diffs))), None, "eV/atom")
        result["relaxation_difference"] = scalar(float(np.mean(np.abs([r["relaxation_difference_eV_per_atom"] for r in rows]))),
                                                 None, "eV/atom")
    return result
