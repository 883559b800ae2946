"""Proton-ordered ice XI (Cmc2₁) relaxed with the bundled PET-style water model, raw and averaged (issue 17, part 3).

The 16-molecule Cmc2₁ cell (:func:`symprobe.study.ice.ice_xi_cell`), rattled slightly (``--rattle``: a perturbation
that breaks Cmc2₁, which the relaxation must remove) or strained within Cmc2₁ (``--rattle 0 --strain s``: then only
the model can break the symmetry), is relaxed in positions and cell (BFGS, ASE's FrechetCellFilter, to ``--fmax``) by each model, in float64:

* the invariant twin (``builtin:water-pet-twin``): the control, whose forces respect every symmetry of the crystal, so
  what it leaves is the relaxation's own residue;
* the raw PET-style model (``builtin:water-pet``), which is not rotation invariant;
* the raw model averaged over the paper's 2i grid (36 rotations with inversion, degree 2), which holds no operation
  of the crystal's point group mm2 other than the identity, so it keeps Cmc2₁ only as far as its degree removes
  the model's breaking;
* the raw model averaged over D2 + inversion (8 operations: the point group mmm of the axes), which holds mm2 in
  the crystal's orientation (c along z): the averaged model is invariant under the crystal's point operations by
  construction, and so keeps Cmc2₁ whatever its degree.

For each: spglib's space group at 1e-3 Å, its default 1e-5 Å and a tight 1e-6 Å, the displacement and strain that
break the ideal cell's Cmc2₁ (projections onto its operations), energy per molecule and steps. Every model's row is
written as soon as it is done; a second call with the same ``--out`` and settings resumes from the rows already there
(and may add grids).

Γ modes: the point group mm2 has only one-dimensional irreducible representations, so no Γ mode of ice XI is
degenerate by symmetry and there is no splitting to measure; the splitting test is done on fcc Cu
(``benchmarks/crystal_symmetry.py``).

    python benchmarks/ice_xi_symmetry.py --out results/ice_xi_symmetry.json
    python benchmarks/ice_xi_symmetry.py --rattle 0 --strain 0.005 --out results/ice_xi_symmetry_strained.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import warnings

import numpy as np
import torch

from symprobe import so3
from symprobe.analysis.crystal import TOLERANCES, cell_residual, relax_crystal, space_groups, symmetry_residual
from symprobe.files import write_json
from symprobe.models.external import load_model
from symprobe.study.ice import ice_xi_cell
from symprobe.symmetrize import GridAverage


def models(grids: list[str], twin: str, raw: str) -> dict[str, object]:
    """The control, the raw model and its averages over ``grids``, as ASE calculators in float64, by label."""
    raw_model = load_model(raw, dtype=torch.float64)
    out = {f"invariant twin ({twin})": load_model(twin, dtype=torch.float64).as_calculator(), f"raw ({raw})": raw_model.as_calculator()}
    for name in grids:
        grid = so3.get(name)
        out[f"averaged over {grid.name} ({len(grid)} operations, degree {grid.degree})"] = GridAverage(raw_model, grid).as_calculator()
    return out


def measure(relaxed, ideal, steps: int, converged: bool, seconds: float) -> dict:
    """Space groups, breaking displacement (Å) and strain, energy per molecule (eV) of one relaxed cell."""
    return {"space_group": space_groups(relaxed),
            "displacement_residual_A": symmetry_residual(relaxed, ideal), "strain_residual": cell_residual(relaxed, ideal),
            "energy_eV_per_H2O": float(relaxed.get_potential_energy()) / (len(relaxed) // 3),
            "max_force_eV_per_A": float(np.linalg.norm(relaxed.get_forces(), axis=1).max()),
            "cell_lengths_A": relaxed.cell.lengths().tolist(), "relaxation_steps": steps, "converged": converged, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="JSON (rows already there are kept: the run resumes)")
    parser.add_argument("--grids", default="D2+i,2i", help="comma-separated rotation grids of the averaged models (a resumed run may add grids)")
    parser.add_argument("--raw", default="builtin:water-pet")
    parser.add_argument("--twin", default="builtin:water-pet-twin")
    parser.add_argument("--rattle", type=float, default=0.01, help="standard deviation of the start's displacements, Å")
    parser.add_argument("--strain", type=float, default=0.0,
                        help="a strain s of the start's cell, diag(s, −0.6 s, 0.4 s) with the atoms scaled: a perturbation that keeps Cmc2₁")
    parser.add_argument("--fmax", type=float, default=1e-6, help="relaxation target: forces, eV/Å, and stress × volume / atoms, eV")
    parser.add_argument("--steps", type=int, default=3000, help="most relaxation steps per model")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", message="logm result may be inaccurate")  # the cell filter's matrix log, harmless at 1e-13
    ideal = ice_xi_cell()
    start = ideal.copy()
    if args.strain:
        start.set_cell(ideal.cell.array @ np.diag(1 + args.strain * np.array([1.0, -0.6, 0.4])), scale_atoms=True)
    if args.rattle:
        start.rattle(args.rattle, seed=1)
    result = json.loads(args.out.read_text()) if args.out.exists() else {}
    settings = {"rattle_A": args.rattle, "strain": args.strain, "fmax": args.fmax, "steps": args.steps, "optimizer": "BFGS"}
    if result and result.get("settings") != settings:
        raise SystemExit(f"{args.out} holds a run with other settings {result.get('settings')}; give another --out")
    result.update({"script": "benchmarks/ice_xi_symmetry.py", "settings": settings,
                   "units": "lengths Å, energy eV per H2O, forces eV/Å, strain dimensionless, time s",
                   "ideal": {"structure": ideal.info["name"], "cell_lengths_A": ideal.cell.lengths().tolist(),
                             "space_group": space_groups(ideal)},
                   "start": {"space_group": space_groups(start),
                             "displacement_residual_A": symmetry_residual(start, ideal)},
                   "gamma_modes": "point group mm2 has only one-dimensional irreducible representations: no Γ mode is degenerate by symmetry"})
    rows = result.setdefault("models", {})
    for label, calculator in models(args.grids.split(","), args.twin, args.raw).items():
        if label in rows:
            print(f"{label}: kept from {args.out}", flush=True)
            continue
        begin = time.time()
        relaxed, steps, converged = relax_crystal(start, calculator, args.fmax, args.steps, optimizer="BFGS")
        rows[label] = {**measure(relaxed, ideal, steps, converged, time.time() - begin), "load_average": list(os.getloadavg())}
        write_json(args.out, result)
        print(label, json.dumps({k: rows[label][k] for k in ("space_group", "displacement_residual_A", "strain_residual", "relaxation_steps", "seconds")}), flush=True)
    plot(result, args.out.with_suffix(".png"))
    return 0


def plot(result: dict, path: Path) -> None:
    """The displacement and strain that break Cmc2₁ after each relaxation, against spglib's tolerances."""
    from symprobe.files import save_figure
    from symprobe.pages import pyplot

    plt = pyplot()
    rows = result["models"]
    labels = [name.split(" (")[0].replace("averaged over ", "averaged over\n") + ("\n" + name.split(" (")[1].split(" operations")[0] + " ops" if "averaged" in name else "")
              for name in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for ax, key, unit in ((axes[0], "displacement_residual_A", "RMS displacement breaking Cmc2₁ (Å)"), (axes[1], "strain_residual", "strain breaking Cmc2₁")):
        values = [max(row[key], 1e-16) for row in rows.values()]
        ax.bar(range(len(values)), values, color=["0.6", "C3"] + ["C0"] * (len(values) - 2))
        for k, row in enumerate(rows.values()):
            ax.annotate(f"{row['space_group']['default']}\n{row['space_group']['tight']}", (k, values[k]), ha="center", va="bottom", fontsize=7)
        if key.startswith("displacement"):
            for label, tol in TOLERANCES.items():
                ax.axhline(tol, color="k", lw=0.8, ls=":")
                ax.annotate(f"spglib {label} {tol:g} Å", (len(values) - 0.5, tol), ha="right", va="bottom", fontsize=7)
        ax.set_yscale("log")
        ax.set_xticks(range(len(values)), labels, fontsize=7)
        ax.set(ylabel=unit)
        ax.grid(alpha=0.3, axis="y")
    start = f"a {result['settings']['rattle_A']} Å rattle" if result["settings"]["rattle_A"] else f"a strain of {result['settings']['strain']} within Cmc2₁"
    fig.suptitle(f"ice XI (Cmc2₁, 16 H2O) relaxed from {start} to {result['settings']['fmax']} eV/Å; "
                 "labels: space group at 1e-5 / 1e-6 Å", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


if __name__ == "__main__":
    sys.exit(main())
