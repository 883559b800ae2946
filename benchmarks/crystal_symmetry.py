"""Symmetry-sensitive tasks for a crystal with a known non-invariant term (issue 17, part 3): fcc Cu with ASE's
EMT plus :class:`~symprobe.testing.AnisotropicPairCalculator`, raw and averaged over a rotation grid.

1. Relaxation: the conventional 4-atom cell, rattled and strained slightly, relaxed in positions and cell
   (ASE's FrechetCellFilter, FIRE, to ``--fmax``) with each model; spglib's space group at its default tolerance
   (1e-5 Å) and a tight one (1e-6 Å), and the displacement and strain that break Fm-3m (projections onto the
   operations of the ideal cell).
2. Frequencies at Γ of the 4-atom cell (Γ and the three X points of fcc), each model at its own relaxed
   structure; the splitting of the sets that EMT's cubic structure makes degenerate.
3. An independent check of the known term's splitting at the ideal EMT geometry: the full diagonalisation of
   EMT + term against first-order degenerate perturbation theory with EMT's modes and the term's own Hessian
   (from its analytic forces); they agree to second order in the amplitude.

    python benchmarks/crystal_symmetry.py --out results/crystal_symmetry.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from ase.build import bulk
from ase.calculators.emt import EMT

from symprobe import so3
from symprobe.analysis.crystal import (SPGLIB_DEFAULT, TOLERANCES, cell_residual, degenerate_sets, gamma_frequencies, gamma_hessian,
                                       normal_modes, relax_crystal, space_group, splittings, symmetry_residual, to_wavenumber)
from symprobe.files import write_json
from symprobe.models.base import CalculatorModel
from symprobe.symmetrize import GridAverage
from symprobe.testing import AnisotropicPairCalculator


def ideal_cell() -> "Atoms":  # noqa: F821
    """EMT's equilibrium conventional fcc Cu cell (4 atoms), a from a scan of EMT's energy."""
    a_values = np.linspace(3.55, 3.65, 41)
    energies = []
    for a in a_values:
        atoms = bulk("Cu", "fcc", a=a, cubic=True)
        atoms.calc = EMT()
        energies.append(atoms.get_potential_energy())
    fit = np.polyfit(a_values, energies, 2)
    return bulk("Cu", "fcc", a=-fit[1] / (2 * fit[0]), cubic=True)


def perturbation_splitting(ideal, term: AnisotropicPairCalculator, sets: list[list[int]], delta: float = 0.01) -> list[float]:
    """First-order degenerate perturbation theory: within each set, ω² shifts by the eigenvalues of Vᵀ H_term V
    (mass-weighted; V: EMT's modes of the set, H_term: the term's own Hessian by central differences of its
    analytic forces); the spread of the shifted ω (cm⁻¹)."""
    n = 3 * len(ideal)
    hessian = np.zeros((n, n))
    for k in range(n):
        moved = []
        for sign in (1, -1):
            atoms = ideal.copy()
            atoms.positions[k // 3, k % 3] += sign * delta
            moved.append(term.term(atoms)[1].ravel())
        hessian[k] = -(moved[0] - moved[1]) / (2 * delta)
    mass = np.repeat(ideal.get_masses(), 3)
    term_weighted = 0.5 * (hessian + hessian.T) / np.sqrt(np.outer(mass, mass))
    omega2, modes = normal_modes(gamma_hessian(_with(ideal, EMT()), delta), ideal.get_masses())
    out = []
    for s in sets:
        shifted = to_wavenumber(omega2[s].mean() + np.linalg.eigvalsh(modes[:, s].T @ term_weighted @ modes[:, s]))
        out.append(float(shifted.max() - shifted.min()))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--grid", default="I", help="rotation grid of the averaged model (default I: 60 rotations, exact to degree 5, above the term's 4)")
    parser.add_argument("--amplitude", type=float, default=0.1, help="A of the known term, eV")
    parser.add_argument("--fmax", type=float, default=1e-6, help="relaxation target: forces, eV/Å, and stress × volume / atoms, eV")
    args = parser.parse_args(argv)
    begin = time.time()
    term = AnisotropicPairCalculator(amplitude=args.amplitude)
    ideal = ideal_cell()
    start = ideal.copy()
    start.rattle(0.02, seed=1)
    start.set_cell(start.cell.array @ (np.eye(3) + np.diag([0.004, -0.003, 0.002])), scale_atoms=True)
    grid = so3.get(args.grid)
    models = {"EMT (invariant reference)": EMT(), "raw: EMT + known term": term,
              f"averaged over {grid.name} ({len(grid.rotations)} rotations)": GridAverage(CalculatorModel(term, name="EMT+term"), grid).as_calculator()}
    reference = gamma_frequencies(_with(ideal, EMT()))
    sets = degenerate_sets(reference)
    rows = {}
    for name, calculator in models.items():
        atoms, steps, converged = relax_crystal(start, calculator, args.fmax)
        frequencies = gamma_frequencies(_with(atoms, calculator))
        rows[name] = {"space_group_default": space_group(atoms, SPGLIB_DEFAULT), "space_group_tight": space_group(atoms, TOLERANCES["tight"]),
                      "displacement_residual_A": symmetry_residual(atoms, ideal), "strain_residual": cell_residual(atoms, ideal),
                      "cell_lengths_A": atoms.cell.lengths().tolist(), "relaxation_steps": steps, "converged": converged,
                      "gamma_cm": frequencies.tolist(), "splittings_cm": splittings(frequencies, sets)}
        print(name, {k: v for k, v in rows[name].items() if k != "gamma_cm"}, flush=True)
    at_ideal = gamma_frequencies(_with(ideal, term))
    check = {"full_diagonalisation_cm": splittings(at_ideal, sets), "first_order_perturbation_cm": perturbation_splitting(ideal, term, sets)}
    result = {"script": "benchmarks/crystal_symmetry.py", "arguments": sys.argv[1:] if argv is None else argv,
              "load_average": list(os.getloadavg()), "wall_seconds": time.time() - begin,
              "units": "lengths Å, frequencies cm⁻¹, amplitude eV, strain dimensionless",
              "term": {"amplitude_eV": args.amplitude, "kappas": term.kappas.tolist(), "cutoff_A": term.cutoff},
              "ideal": {"a_A": float(ideal.cell.lengths()[0]), "space_group": space_group(ideal)}, "degenerate_sets": sets,
              "reference_gamma_cm": reference.tolist(), "models": rows, "known_term_check_at_ideal": check}
    write_json(args.out, result)
    plot(result, args.out.with_suffix(".png"))
    print(json.dumps(check, indent=1))
    return 0


def plot(result: dict, path: Path) -> None:
    """Each model's Γ frequencies in the sets EMT's cubic cell makes degenerate, relative to the set's mean."""
    from symprobe.files import save_figure
    from symprobe.pages import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(1, len(result["degenerate_sets"]), figsize=(5 * len(result["degenerate_sets"]), 3.8), squeeze=False)
    for ax, modes in zip(axes[0], result["degenerate_sets"]):
        for k, (name, row) in enumerate(result["models"].items()):
            values = np.array(row["gamma_cm"])[modes]
            ax.plot([k] * len(values), values - values.mean(), "_", ms=30, mew=2)
            ax.annotate(f"{row['space_group_default']}\nspread {np.ptp(values):.2g}", (k, 0), xytext=(6, 22), textcoords="offset points", fontsize=7)
        ax.set_xticks(range(len(result["models"])), [n.split(" (")[0].replace(": ", ":\n") for n in result["models"]], fontsize=7)
        ax.set(xlim=(-0.5, len(result["models"]) - 0.2), ylabel="frequency − set mean (cm⁻¹)",
               title=f"{len(modes)}-fold set at {np.mean(np.array(result['reference_gamma_cm'])[modes]):.0f} cm⁻¹ (EMT)")
        ax.grid(alpha=0.3)
    fig.suptitle(f"fcc Cu: Γ modes of the 4-atom cell after relaxation (known term A = {result['term']['amplitude_eV']} eV)", fontsize=10)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)


def _with(atoms, calculator):
    atoms = atoms.copy()
    atoms.calc = calculator
    return atoms


if __name__ == "__main__":
    sys.exit(main())
