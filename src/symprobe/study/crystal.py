"""The study of a crystal: does the model keep the crystal's space group, and the Γ-mode degeneracies it implies?

The user's crystal is made exactly symmetric (spglib at 1e-3 Å, :func:`~symprobe.analysis.crystal.symmetrised`) and
relaxed in positions and cell (BFGS with ASE's FrechetCellFilter; torch models in float64) by three variants of the
model:

* ``raw`` — the model as it is: from an exactly symmetric start only its own breaking can lower the symmetry;
* ``averaged`` — averaged over the study grid (2i: 36 evaluations, exact to degree 2), which removes the breaking
  up to its degree;
* ``point-group`` — averaged over the crystal's own point group (spglib, in the crystal's orientation): invariant
  under every operation of the space group by construction, so it keeps the group whatever the model's breaking.

Per variant: spglib's space group at 1e-3, 1e-5 and 1e-6 Å, the displacement (Å, RMS) and strain that break the
start's space group (projections onto its operations), and Γ frequencies of the relaxed cell (finite differences)
with the splitting of each set of modes the space group makes degenerate (cm⁻¹). The point-group variant is exact
under the group but for round-off, so its splittings are the floor of the finite differences and the model's precision.

The stage is deterministic: there is no sampling noise and so no null comparison (``null_tests`` is empty). Each
variant is cached in ``out/stages/crystal_<variant>.json`` (:class:`~symprobe.study.stages.StageCache`).
"""

from __future__ import annotations

import hashlib
import html
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.analysis.crystal import (
    TOLERANCES,
    cell_residual,
    gamma_hessian,
    gamma_operations,
    normal_modes,
    point_group,
    relax_crystal,
    space_groups,
    symmetric_sets,
    symmetrised,
    symmetry_residual,
    to_wavenumber,
)
from symprobe.audit import in_float64, model_dtype
from symprobe.models.base import Model
from symprobe.pages import png_base64, pyplot, table
from symprobe.study.plan import Plan
from symprobe.study.report import COLOURS as VARIANT_COLOURS
from symprobe.study.stages import StageCache
from symprobe.symmetrize import GridAverage

CRYSTAL_VARIANTS = ("raw", "averaged", "point-group")
COLOURS = {**VARIANT_COLOURS, "point-group": "#8e44ad"}
FMAX_EV_PER_A = {True: 1e-5, False: 1e-6}  # relaxation target (quick, full): forces eV/Å, stress × volume / atoms eV
MIN_STEPS, MAX_STEPS = 20, 2000  # relaxation steps per variant, within the budget
SPLIT_FLOOR_FACTOR = 10.0  # a degenerate set is split when its spread exceeds this × the finite-difference floor
SPLIT_ABSOLUTE_CM = 1e-4  # cm⁻¹: and exceeds this (the floor of an exactly invariant float64 model is ~1e-6)


def run_crystal(model: Model, atoms: Atoms, out: Path, *, quick: bool = True, budget_s: float = 300.0, seed: int = 0,
                progress: bool = True) -> dict[str, Any]:
    """The crystal study of ``model`` on ``atoms`` (a periodic cell) into ``out``: JSON-ready, cached per variant.

    ``budget_s`` (s) sets the relaxation steps from the model's measured cost; ``quick`` relaxes to 1e-5 eV/Å
    instead of 1e-6. ``seed`` is not used: nothing here is random."""
    if not atoms.pbc.all() or atoms.cell.rank != 3:
        raise ValueError(f"crystal study: {atoms.get_chemical_formula()} is not a crystal (periodic in three directions)")
    model = in_float64(model)
    start = symmetrised(atoms)
    group = point_group(start)
    variants = {"raw": model, "averaged": GridAverage(model, so3.paper_grid(Plan.grid)), "point-group": GridAverage(model, group)}
    cache = StageCache(Path(out), _fingerprint(model, start, quick, budget_s), progress)
    plan = cache.run("crystal_plan", lambda: _plan(start, variants, quick, budget_s))
    rows = {name: cache.run(f"crystal_{name}", lambda name=name: relaxed_variant(variants[name], start, plan["fmax_eV_per_A"],
                                                                                   plan["max_steps"], plan["gamma"]))
            for name in CRYSTAL_VARIANTS}
    experiment = {
        "units": "lengths Å, energies eV/atom, forces eV/Å, frequencies cm⁻¹ (imaginary negative), strain dimensionless",
        "tolerances_A": TOLERANCES, "plan": plan, "dtype": model_dtype(model),
        "input": {"space_groups": space_groups(atoms), "symmetrised_shift_A": symmetry_residual(atoms, start),
                  "n_atoms": len(atoms)},
        "start": {"space_groups": space_groups(start), "cell_parameters": start.cell.cellpar().tolist()},
        "point_group": {"name": group.name, "operations": len(group), "degree": group.degree},
        "grid": {"label": Plan.grid, "evaluations": len(variants["averaged"].quadrature),
                 "degree": variants["averaged"].quadrature.degree},
        "variants": rows, "floor_cm": _floor(rows) if plan["gamma"] else None,
        "gamma_skipped": None if plan["gamma"] else (
            f"the finite-difference Hessians at Γ ({12 * len(start)} calls of each variant, about {plan['hessians_s']:.0f} s) "
            f"exceed the quick budget of {budget_s:g} s: give a larger budget or run the full study"),
    }
    system = f"{atoms.info.get('name', atoms.get_chemical_formula())} in {experiment['start']['space_groups']['default']}"
    return {"kind": "crystal", "system": system, "experiments": {"crystal": experiment}, "null_tests": {},
            "null_tests_note": "none: the crystal stage is deterministic (relaxations and finite differences, no sampling)",
            "findings": crystal_findings(system, experiment)}


def relaxed_variant(model: Model, start: Atoms, fmax: float, max_steps: int, gamma: bool = True) -> dict[str, Any]:
    """``start`` relaxed by ``model`` in positions and cell: space groups at :data:`TOLERANCES`, the displacement (Å)
    and strain that break ``start``'s space group, energy (eV/atom), and with ``gamma`` the Γ frequencies and the sets
    the group makes degenerate."""
    begin = time.perf_counter()
    with warnings.catch_warnings():  # the cell filter's matrix logarithm near the identity, harmless
        warnings.filterwarnings("ignore", message="logm result may be inaccurate")
        relaxed, steps, converged = relax_crystal(start, model.as_calculator(), fmax, max_steps, optimizer="BFGS")
    row = {
        "model": model.name, "space_groups": space_groups(relaxed), "displacement_A": symmetry_residual(relaxed, start),
        "strain": cell_residual(relaxed, start), "energy_eV_per_atom": float(relaxed.get_potential_energy()) / len(relaxed),
        "max_force_eV_per_A": float(np.linalg.norm(relaxed.get_forces(), axis=1).max()),
        "cell_parameters": relaxed.cell.cellpar().tolist(), "steps": steps, "converged": converged,
    }
    if gamma:
        hessian = gamma_hessian(relaxed)
        row["gamma_cm"] = to_wavenumber(normal_modes(hessian, relaxed.get_masses())[0]).tolist()
        row["degenerate_sets"] = symmetric_sets(hessian, relaxed.get_masses(), gamma_operations(start))
    row["seconds"] = time.perf_counter() - begin
    return row


def _plan(start: Atoms, variants: dict[str, Model], quick: bool, budget_s: float) -> dict[str, Any]:
    """Relaxation target and steps: the budget less the finite-difference Hessians (12 N calls per variant), shared
    by the steps of all variants (one call each per step), from each variant's measured cost per call (s). Quick
    studies leave Γ out (``gamma`` false) when the Hessians alone exceed the budget."""
    costs = {}
    for name, model in variants.items():
        model.predict(start)  # warm-up
        begin = time.perf_counter()
        model.predict(start)
        costs[name] = time.perf_counter() - begin
    per_step = sum(costs.values())
    hessians_s = 12 * len(start) * per_step
    gamma = not quick or hessians_s <= budget_s
    steps = int(np.clip((budget_s - hessians_s * gamma) / per_step, MIN_STEPS, MAX_STEPS))
    return {"fmax_eV_per_A": FMAX_EV_PER_A[quick], "max_steps": steps, "gamma": gamma, "seconds_per_call": costs,
            "hessians_s": hessians_s, "budget_s": budget_s}


def _fingerprint(model: Model, start: Atoms, quick: bool, budget_s: float) -> str:
    """The cache key: the model's name, the symmetrised structure and the settings."""
    digest = hashlib.sha256(np.concatenate([start.numbers, start.positions.ravel(), start.cell.array.ravel()]).round(10).tobytes())
    return f"{model.name}|{digest.hexdigest()[:16]}|quick={quick}|budget={budget_s:g}"


def _floor(rows: dict[str, Any]) -> float:
    """The splitting (cm⁻¹) of an exactly invariant model by the finite differences alone: the point-group variant's
    largest (0 without degenerate sets)."""
    return max((s["splitting_cm"] for s in rows["point-group"]["degenerate_sets"]), default=0.0)


def is_split(row: dict[str, Any], floor: float) -> bool:
    """Whether any degenerate set of ``row`` splits beyond the finite-difference floor (cm⁻¹)."""
    return any(s["splitting_cm"] > max(SPLIT_FLOOR_FACTOR * floor, SPLIT_ABSOLUTE_CM) for s in row["degenerate_sets"])


def keeps_group(row: dict[str, Any], start: dict[str, str], label: str = "tight") -> bool:
    """Whether the relaxed structure of ``row`` has the start's space group at the tolerance ``label``."""
    return row["space_groups"][label] == start[label]


def _group_verdict(rows: dict[str, Any], start: dict[str, str], name: str, label: str) -> tuple[bool | None, str]:
    """(holds, why it is withheld or ""): whether variant ``name`` keeps the start's space group at tolerance ``label``;
    withheld where the start has no symmetry, or where the point-group average (exact under the group but for the
    model's round-off) loses it too, so that the tolerance is below the model's numerical floor."""
    if start[label].startswith("P1 "):
        return None, "withheld: the start has no symmetry to lose (P1); "
    if not keeps_group(rows["point-group"], start, label):
        which = "loses it" if name == "point-group" else "loses it too"
        return None, (f"withheld: the point-group average, exact under the group but for round-off, {which} at "
                      f"{TOLERANCES[label]:g} Å: this tolerance is below the model's numerical floor; ")
    return keeps_group(rows[name], start, label), ""


def crystal_findings(system: str, experiment: dict[str, Any]) -> list[dict[str, Any]]:
    """Findings worded for ``system``: each variant keeps the space group at 1e-6 Å (and the raw model at 1e-3 Å, the
    usual tolerance; see :func:`_group_verdict`), the raw and averaged models keep the Γ degeneracies (holds None
    where there is no degenerate Γ set)."""
    start, rows, floor = experiment["start"]["space_groups"], experiment["variants"], experiment["floor_cm"]
    labels = {"raw": "the raw model", "averaged": f"the model averaged over the {experiment['grid']['label']} grid "
              f"({experiment['grid']['evaluations']} evaluations)",
              "point-group": f"the model averaged over its {experiment['point_group']['name']} "
              f"({experiment['point_group']['operations']} evaluations)"}
    out = []
    for name, label in (*((n, "tight") for n in CRYSTAL_VARIANTS), ("raw", "loose")):
        row = rows[name]
        groups = ", ".join(f"{row['space_groups'][k]} at {v:g} Å" for k, v in TOLERANCES.items())
        holds, withheld = _group_verdict(rows, start, name, label)
        out.append({"key": f"crystal_{name.replace('-', '_')}_keeps_space_group" + ("_loose" if label == "loose" else ""),
                    "claim": f"{system} relaxed with {labels[name]} keeps its space group at {TOLERANCES[label]:g} Å",
                    "holds": holds,
                    "evidence": withheld + f"relaxed: {groups}; breaking displacement {row['displacement_A']:.2g} Å RMS, "
                    f"strain {row['strain']:.2g}; {row['steps']} BFGS steps, {'converged' if row['converged'] else 'not converged'} "
                    f"to {experiment['plan']['fmax_eV_per_A']:g} eV/Å"})
    for name in ("raw", "averaged"):
        row = rows[name]
        sets = row.get("degenerate_sets", [])
        spreads = ", ".join(f"{s['splitting_cm']:.2g} cm⁻¹ ({s['modes']} modes at {s['frequency_cm']:.4g} cm⁻¹)" for s in sets)
        out.append({"key": f"crystal_{name}_keeps_gamma_degeneracy",
                    "claim": f"{labels[name][0].upper() + labels[name][1:]} keeps the Γ-mode degeneracies of {system}",
                    "holds": None if not sets else not is_split(row, floor),
                    "evidence": experiment["gamma_skipped"] or ((f"splittings {spreads}, against a finite-difference floor of "
                                 f"{floor:.2g} cm⁻¹ (the point-group average, exact under the group)") if sets else
                    "the space group makes no Γ mode of this cell degenerate (one-dimensional representations only)")})
    return out


def crystal_section(result: dict[str, Any]) -> str:
    """The report's HTML section of a crystal study: what was run, a figure of the breaking displacement and the Γ
    splittings per variant, and their tables."""
    exp = result["experiments"]["crystal"]
    rows, tolerances = exp["variants"], exp["tolerances_A"]
    intro = (f"<p>{html.escape(result['system'])}: the input ({exp['input']['n_atoms']} atoms; "
             f"{html.escape(', '.join(f'{g} at {tolerances[k]:g} Å' for k, g in exp['input']['space_groups'].items()))}) "
             f"made exactly symmetric (moved by {exp['input']['symmetrised_shift_A']:.2g} Å RMS), then relaxed in positions and cell "
             f"(BFGS, to {exp['plan']['fmax_eV_per_A']:g} eV/Å, at most {exp['plan']['max_steps']} steps, evaluated in {html.escape(exp['dtype'])}) by the raw "
             f"model, its average over the {html.escape(exp['grid']['label'])} grid ({exp['grid']['evaluations']} evaluations, "
             f"degree {exp['grid']['degree']}) and its average over the crystal's {html.escape(exp['point_group']['name'])} "
             f"({exp['point_group']['operations']} operations). Deterministic: no null comparison.</p>")
    structure = table("crystal-structure", "Space group after relaxation, and what breaks the start's",
                      ["variant", *(f"space group at {v:g} Å" for v in tolerances.values()), "displacement (Å RMS)", "strain",
                       "energy − raw (meV/atom)", "steps", "converged"],
                      [[name, *(row["space_groups"][k] for k in tolerances), row["displacement_A"], row["strain"],
                        1000 * (row["energy_eV_per_atom"] - rows["raw"]["energy_eV_per_atom"]), row["steps"], row["converged"]]
                       for name, row in rows.items()])
    figure = f"<figure id='figure-crystal'><img alt='crystal' src='data:image/png;base64,{png_base64(crystal_figure(exp))}'></figure>"
    return f"<h2>Crystal: {html.escape(result['system'])}</h2>" + intro + figure + structure + _gamma_table(exp)


def _gamma_table(exp: dict[str, Any]) -> str:
    """The Γ sets of each variant as a table, or why there is none."""
    if exp["gamma_skipped"]:
        return f"<p>Γ modes: not computed, {html.escape(exp['gamma_skipped'])}.</p>"
    rows = [[name, s["modes"], s["frequency_cm"], s["splitting_cm"]] for name, row in exp["variants"].items()
            for s in row["degenerate_sets"]]
    if not rows:
        return "<p>Γ modes: the space group makes none of this cell's modes degenerate (one-dimensional representations only).</p>"
    return table("crystal-gamma", f"Γ sets the space group makes degenerate (finite-difference floor {exp['floor_cm']:.2g} cm⁻¹)",
                 ["variant", "modes", "frequency (cm⁻¹)", "splitting (cm⁻¹)"], rows)


def crystal_figure(exp: dict[str, Any]):
    """Per variant: the displacement that breaks the start's space group against spglib's tolerances, and (where Γ
    has degenerate sets) the largest Γ splitting against the finite-difference floor; log scales."""
    plt = pyplot()
    rows = exp["variants"]
    names = list(rows)
    colours = [COLOURS[n] for n in names]
    splitting = [max([s["splitting_cm"] for s in rows[n].get("degenerate_sets", [])], default=None) for n in names]
    with_gamma = all(s is not None for s in splitting)
    fig, axes = plt.subplots(1, 1 + with_gamma, figsize=(5 + 5 * with_gamma, 3.6), squeeze=False)
    axes = axes[0]
    axes[0].bar(names, [max(rows[n]["displacement_A"], 1e-16) for n in names], color=colours)
    for tolerance in exp["tolerances_A"].values():
        axes[0].axhline(tolerance, color="k", lw=0.8, ls=":")
        axes[0].annotate(f"spglib {tolerance:g} Å", (len(names) - 0.5, tolerance), ha="right", va="bottom", fontsize=7)
    axes[0].set(yscale="log", ylabel="displacement breaking the start's group (Å)", title="relaxed structure")
    if with_gamma:
        floor = max(exp["floor_cm"], 1e-12)
        axes[1].bar(names, [max(s, 1e-12) for s in splitting], color=colours)
        axes[1].axhline(floor, color="k", lw=0.8, ls=":")
        axes[1].annotate("finite-difference floor", (len(names) - 0.5, floor), ha="right", va="bottom", fontsize=7)
        axes[1].set(yscale="log", ylabel="largest Γ splitting (cm⁻¹)", title="Γ sets the group makes degenerate")
    for ax in axes:
        ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    return fig
