"""The gas-phase study of any molecule (``symprobe study --molecule FILE``): the paper's isolated-molecule experiments
with the user's molecule in place of water.

The molecule is first relaxed with the raw model (BFGS) and turned into its principal frame (axes a, b, c of the
inertia tensor, smallest moment first); copies of it in random orientations run in the batched engine
(:mod:`symprobe.study.gas`, every variant of :mod:`symprobe.study.variants` and a second raw set):

* NVE from 300 K (0.5 fs): each molecule's angular momentum L(t) (eV·fs), its change |L(t) − L(0)| and the energy
  drift, raw against the variants and against the second raw set (the null comparison);
* Langevin NVT at 300 K: the lab-frame orientation of each principal axis (the rotation that best superposes the
  relaxed molecule on each frame, mass-weighted: defined for any molecule, a spherical top included), its
  orientational free energy F/kT and its low-order bias (ℓ ≤ 2, Hotelling's T² over molecules), raw against the
  variants and against the second raw set.

Run lengths come from a wall-time budget at the model's measured cost (quick, :func:`measure_costs`: seconds even
for a slow model; refused on one line when even the shortest runs are far past the budget) or the paper's gas-phase
protocols (full); stages are cached in ``out/stages`` and MD runs resume from their checkpoints under ``out/md``.
"""

from __future__ import annotations

import html
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.analysis import statistics
from symprobe.models.base import Model
from symprobe.pages import png_base64, pyplot, table
from symprobe.study import gas
from symprobe.study.plan import Plan, plan_key, timed
from symprobe.study.report import COLOURS
from symprobe.study.stages import StageCache
from symprobe.study.variants import REPEAT, VARIANTS, run_variants

KIND = "molecule"
AXES = ("a", "b", "c")  # principal axes of inertia, smallest moment first
PROTOCOL = 1  # raised when an experiment's protocol changes, so that no cached stage of an older one is reused
COST_MOLECULES = 8  # molecules per variant at which the cost of a batched step is measured
TIMED_RUN_STEPS = (1, 4)  # lengths (multiples of n_inner) of the short runs that time a step of a cheap model
TIMED_RUNS_MAX_S = 30.0  # seconds: the longest the short runs may be predicted to take; else the prediction is the cost
TRAJECTORY_STRIDES = {"nve": 4, "nvt": 10}  # steps between the frames the runs write
RUN_SHARES = {"nve": 0.3, "nvt": 0.6}  # shares of a quick budget (the rest: relaxation, costs, analysis)
MOST_OVER_BUDGET = 3.0  # a quick plan estimated to take more than this many times its budget is refused


@dataclass
class MoleculePlan:
    """Sizes and lengths of one molecule study (steps of 0.5 fs); the defaults are the paper's gas-phase protocols, as
    in the water study's full :class:`~symprobe.study.plan.Plan`."""

    quick: bool
    grid: str = Plan.grid
    mts_grid: str = Plan.mts_grid
    n_inner: int = Plan.n_inner
    seed: int = 0
    nve_molecules: int = Plan.gas_nve_molecules
    nve_steps: int = Plan.gas_nve_steps
    nvt_molecules: int = Plan.gas_nvt_molecules
    nvt_averaged_molecules: int = Plan.gas_nvt_averaged_molecules
    nvt_steps: int = Plan.gas_nvt_steps
    bandwidth: float = Plan.gas_bandwidth  # rad, of the orientation maps
    relax_fmax: float = 0.01  # eV/Å
    relax_steps: int = 500

    def key(self) -> str:
        """A short id of the plan and of :data:`PROTOCOL` (MD directories and cached stages are keyed by it)."""
        return plan_key(asdict(self), PROTOCOL)


def quick_plan(costs: dict[str, float], budget_s: float, seed: int = 0) -> MoleculePlan:
    """Lengths that fit ``budget_s`` seconds at the measured per-step ``costs`` (s) of :func:`measure_costs`, split by
    :data:`RUN_SHARES`; caps grow in proportion to the budget above 300 s."""
    scale = max(1.0, budget_s / 300.0)
    plan = MoleculePlan(quick=True, seed=seed, nve_molecules=COST_MOLECULES, nvt_molecules=2 * COST_MOLECULES,
                        nvt_averaged_molecules=2 * COST_MOLECULES, bandwidth=0.3, relax_fmax=0.05, relax_steps=200)
    per_step = step_s(plan, costs)
    plan.nve_steps = _rounded(RUN_SHARES["nve"] * budget_s / per_step["nve"], 200, 6000 * scale)
    plan.nvt_steps = _rounded(RUN_SHARES["nvt"] * budget_s / per_step["nvt"], 400, 20000 * scale)
    return plan


def step_s(plan: MoleculePlan, costs: dict[str, float]) -> dict[str, float]:
    """Estimated seconds per 0.5 fs step of the NVE and NVT runs of ``plan``: the measured ``costs`` at
    :data:`COST_MOLECULES` molecules per variant, scaled linearly with the molecules."""
    return {"nve": costs["nve_step_s"] * plan.nve_molecules / COST_MOLECULES,
            "nvt": costs["nvt_step_s"] * max(plan.nvt_molecules, plan.nvt_averaged_molecules) / COST_MOLECULES}


def estimate_s(plan: MoleculePlan, costs: dict[str, float]) -> dict[str, float]:
    """Estimated seconds of the NVE and NVT runs of ``plan`` (:func:`step_s`)."""
    per_step = step_s(plan, costs)
    return {"nve": per_step["nve"] * plan.nve_steps, "nvt": per_step["nvt"] * plan.nvt_steps}


def check_fits(plan: MoleculePlan, costs: dict[str, float], budget_s: float, what: str) -> None:
    """Raise ``ValueError`` (one line) when the quick ``plan`` is estimated to take more than :data:`MOST_OVER_BUDGET`
    times ``budget_s`` seconds: its runs are then the shortest that still give statistics, and even they are far past
    what the user asked for. ``what`` names the molecule and the model."""
    total = sum(estimate_s(plan, costs).values())
    minutes = math.ceil(total / 60)
    if total > MOST_OVER_BUDGET * budget_s:
        raise ValueError(f"quick study of the molecule {what}: its shortest runs that still give statistics (NVE "
                         f"{plan.nve_steps}, NVT {plan.nvt_steps} steps of 0.5 fs) would take about {minutes} min here "
                         f"({step_s(plan, costs)['nvt']:.2g} s per NVT step), more than {MOST_OVER_BUDGET:g} times its budget "
                         f"of {budget_s / 60:.3g} min; give --budget-min {minutes} for the molecule alone ({minutes} × the number of "
                         "systems studied together: they share the budget equally) or use a faster device")


def _rounded(n: float, lo: int, hi: float, multiple: int = 10) -> int:
    return int(multiple * round(min(max(n, lo), hi) / multiple))


def call_costs(model: Model, molecule: Atoms, grid: str = "2i") -> dict[str, float]:
    """Seconds of wall time per model call (energy and forces) as the batched engine makes them: of
    :data:`COST_MOLECULES` copies of ``molecule`` in random orientations (one structure each),
    and of one molecule's rotated copies on ``grid`` (one structure: the averaged variant's share of a step per molecule);
    each after a warm-up call."""
    molecules = gas.isolated_molecules(COST_MOLECULES, 0, molecule)
    rotations = so3.get(grid).rotations
    return {"raw_call_s": timed(lambda: model.predict_many(molecules), 1),
            "averaged_call_s": timed(lambda: model.predict_rotated(molecules[0], rotations), 1)}


def predicted_step_s(calls: dict[str, float], grid: str = "2i", mts_grid: str = "2i", n_inner: int = 10) -> float:
    """Seconds per 0.5 fs step of :data:`COST_MOLECULES` molecules per variant (every variant and the second raw set),
    from the ``calls`` of :func:`call_costs`: per molecule, one structure of raw, random and raw-repeat, the grid's
    copies of the averaged variant, one structure of MTS plus its ``mts_grid`` copies every ``n_inner`` steps (their
    cost in proportion to the copies). An upper bound for a model that evaluates many structures in one pass."""
    single = calls["raw_call_s"] / COST_MOLECULES
    averaged = calls["averaged_call_s"]
    per_molecule = {"raw": single, "averaged": averaged, "random": single, REPEAT: single,
                    "mts": single + averaged * len(so3.get(mts_grid)) / len(so3.get(grid)) / n_inner}
    return COST_MOLECULES * sum(per_molecule[variant] for variant in (*VARIANTS, REPEAT))


def timed_run_costs(model: Model, molecule: Atoms, grid: str = "2i", mts_grid: str = "2i", n_inner: int = 10) -> dict[str, float]:
    """Seconds of wall time per 0.5 fs step of the batched NVE and NVT runs of :data:`COST_MOLECULES` copies of
    ``molecule`` per variant (every variant and the second raw set), logs and trajectories written as the study's
    runs write them: the difference of runs of :data:`TIMED_RUN_STEPS` multiples of ``n_inner`` (start-up costs
    cancel)."""
    variants = (*VARIANTS, REPEAT)
    starts = {"nve": gas.nve_starts(variants, COST_MOLECULES, 0, molecule),
              "nvt": gas.nvt_starts(variants, COST_MOLECULES, 0, template=molecule)}
    ensembles = {"nve": gas.NVE, "nvt": gas.NVT}
    short, long = (n * n_inner for n in TIMED_RUN_STEPS)
    costs = {}
    with tempfile.TemporaryDirectory(prefix="symprobe-costs-") as scratch:
        for run in ("nve", "nvt"):
            seconds = []
            for steps in (short, long):
                begin = time.perf_counter()
                run_variants(model, starts[run], Path(scratch) / f"{run}-{steps}", grid=grid, n_inner=n_inner, mts_grid=mts_grid,
                             ensemble=ensembles[run], steps=steps, timestep_fs=0.5, seed=0,
                             trajectory_stride=TRAJECTORY_STRIDES[run], progress=False)
                seconds.append(time.perf_counter() - begin)
            costs[f"{run}_step_s"] = max(seconds[1] - seconds[0], seconds[1] * short / long) / (long - short)
    return costs


def measure_costs(model: Model, molecule: Atoms, grid: str = "2i", mts_grid: str = "2i", n_inner: int = 10) -> dict[str, Any]:
    """Seconds of wall time per 0.5 fs step of the NVE and NVT runs (``nve_step_s``, ``nvt_step_s``) of
    :data:`COST_MOLECULES` copies of ``molecule`` per variant: timed by short runs (:func:`timed_run_costs`) where
    the model's call costs (:func:`call_costs`, also returned) predict that they take at most :data:`TIMED_RUNS_MAX_S`,
    else that prediction (:func:`predicted_step_s`); ``timed_runs`` says which."""
    calls = call_costs(model, molecule, grid)
    step = predicted_step_s(calls, grid, mts_grid, n_inner)
    timed_runs = 2 * sum(TIMED_RUN_STEPS) * n_inner * step <= TIMED_RUNS_MAX_S
    steps = timed_run_costs(model, molecule, grid, mts_grid, n_inner) if timed_runs else {"nve_step_s": step, "nvt_step_s": step}
    return {**steps, **calls, "timed_runs": timed_runs}


def principal_frame(atoms: Atoms) -> tuple[Atoms, np.ndarray]:
    """(``atoms`` about its centre of mass turned so that its principal axes of inertia are x, y, z, smallest moment
    first, right-handed; the moments (3,) amu·Å²). Not periodic."""
    positions = atoms.get_positions() - atoms.get_center_of_mass()
    masses = atoms.get_masses()
    inertia = np.sum(masses * np.sum(positions**2, axis=1)) * np.eye(3) - np.einsum("a,ai,aj->ij", masses, positions, positions)
    moments, axes = np.linalg.eigh(inertia)
    if np.linalg.det(axes) < 0:
        axes[:, 2] *= -1
    turned = Atoms(atoms.numbers, positions=positions @ axes, masses=atoms.get_masses(), pbc=False)
    turned.info["name"] = atoms.get_chemical_formula(mode="hill")
    return turned, moments


def relaxed(model: Model, atoms: Atoms, fmax: float, steps: int) -> tuple[Atoms, dict[str, Any]]:
    """(``atoms`` relaxed with ``model`` by BFGS to ``fmax`` eV/Å or ``steps`` steps, not periodic; what happened)."""
    from ase.optimize import BFGS

    work = Atoms(atoms.numbers, positions=atoms.get_positions(), masses=atoms.get_masses(), pbc=False)
    work.calc = model.as_calculator()
    before = float(work.get_potential_energy())
    optimizer = BFGS(work, logfile=None)
    converged = bool(optimizer.run(fmax=fmax, steps=steps))
    largest = float(np.linalg.norm(work.get_forces(), axis=1).max())
    info = {"steps": int(optimizer.get_number_of_steps()), "converged": converged, "fmax_eV_per_A": fmax,
            "largest_force_eV_per_A": largest, "energy_change_eV": float(work.get_potential_energy()) - before}
    work.calc = None
    return work, info


def orientations(positions: np.ndarray, reference: Atoms) -> np.ndarray:
    """Rotations R (frames, molecules, 3, 3) that best superpose ``reference`` (centred at its centre of mass) on each
    molecule of frames (frames, atoms, 3) Å joining copies of it, mass-weighted (Kabsch): x ≈ R b. Column k of R is
    the reference's axis k in the lab frame."""
    masses = reference.get_masses()
    size = len(reference)
    body = reference.get_positions() - reference.get_center_of_mass()
    x = np.asarray(positions, dtype=np.float64).reshape(positions.shape[0], -1, size, 3)
    x = x - np.einsum("a,fmai->fmi", masses, x)[:, :, None, :] / masses.sum()
    u, _, vt = np.linalg.svd(np.einsum("a,ai,fmaj->fmij", masses, body, x))
    flip = np.sign(np.linalg.det(u @ vt))
    u[..., :, 2] *= flip[..., None]
    return np.swapaxes(u @ vt, -1, -2)


def axis_directions(reference: Atoms, axis: int) -> Callable[[np.ndarray], np.ndarray]:
    """Positions (frames, atoms, 3) → the lab directions (frames, molecules, 3) of principal axis ``axis`` of
    ``reference`` (in its principal frame, :func:`principal_frame`)."""
    return lambda positions: orientations(positions, reference)[..., :, axis]


def run_molecule(model: Model, atoms: Atoms, out: Path, *, quick: bool = True, budget_s: float = 300.0, seed: int = 0,
                 progress: bool = True, plan: MoleculePlan | None = None) -> dict[str, Any]:
    """The molecule study of ``atoms`` (one molecule) with ``model`` into ``out`` (module docstring); ``plan``
    overrides the planned lengths. JSON-ready: ``kind``, ``system``, ``plan``, ``experiments``, ``null_tests``,
    ``findings``."""
    out = Path(out)
    formula = atoms.get_chemical_formula(mode="hill")
    if len(atoms) < 2:
        raise ValueError(f"--molecule {formula}: a molecule needs at least 2 atoms to have an orientation")
    costs_key = f"costs:{model.name}:{formula}:{COST_MOLECULES}:{PROTOCOL}:calls-or-runs"
    costs = StageCache(out, costs_key, progress).run("costs", lambda: measure_costs(model, principal_frame(atoms)[0]))
    if plan is None and quick:
        plan = quick_plan(costs, budget_s, seed)
        check_fits(plan, costs, budget_s, f"{formula} with {model.name}")
    plan = plan or MoleculePlan(quick=False, seed=seed)
    estimate = estimate_s(plan, costs)
    if progress:
        print(f"[study] molecule {formula}: {'quick' if plan.quick else 'full'} mode, estimated "
              f"{sum(estimate.values()) / 60:.1f} min (NVE {estimate['nve'] / 60:.1f}, NVT {estimate['nvt'] / 60:.1f} min)"
              + (f", past the budget of {budget_s / 60:.1f} min: the shortest runs it makes (NVE 200, NVT 400 steps)"
                 if plan.quick and sum(estimate.values()) > budget_s else ""), flush=True)
    cache = StageCache(out, plan.key(), progress)
    md = out / "md" / plan.key()

    def relaxation() -> dict[str, Any]:
        molecule, info = relaxed(model, atoms, plan.relax_fmax, plan.relax_steps)
        frame, moments = principal_frame(molecule)
        return {**info, "numbers": frame.numbers.tolist(), "positions_A": frame.get_positions().tolist(),
                "masses_amu": frame.get_masses().tolist(), "moments_amu_A2": moments.tolist()}

    relaxation_result = cache.run("relaxation", relaxation)
    reference = Atoms(relaxation_result["numbers"], positions=relaxation_result["positions_A"],
                      masses=relaxation_result["masses_amu"], pbc=False)
    variants = (*VARIANTS, REPEAT)
    nve = cache.run("nve", lambda: gas.angular_momentum_runs(
        model, md / "nve", variants, n_molecules=plan.nve_molecules, steps=plan.nve_steps, grid=plan.grid,
        n_inner=plan.n_inner, mts_grid=plan.mts_grid, seed=plan.seed, trajectory_stride=TRAJECTORY_STRIDES["nve"], progress=progress,
        template=reference))
    nvt = cache.run("nvt", lambda: {axis: gas.orientation_runs(
        model, md / "nvt", variants, n_molecules=plan.nvt_molecules, n_averaged_molecules=plan.nvt_averaged_molecules,
        steps=plan.nvt_steps, grid=plan.grid, seed=plan.seed, trajectory_stride=TRAJECTORY_STRIDES["nvt"], bandwidth=plan.bandwidth,
        n_inner=plan.n_inner, mts_grid=plan.mts_grid, progress=progress, template=reference,
        direction_of=axis_directions(reference, k)) for k, axis in enumerate(AXES)})
    experiments = {"relaxation": relaxation_result, "nve": nve, "nvt": nvt}
    grid = so3.get(plan.grid)
    return {"kind": KIND, "system": formula, "n_atoms": len(atoms), "plan": asdict(plan), "costs_s_per_step": costs,
            "estimate_s": estimate,
            "grid": {"name": plan.grid, "evaluations": len(grid), "degree": grid.degree},
            "experiments": experiments, "null_tests": null_tests(experiments), "findings": findings(formula, experiments, plan)}


def null_tests(experiments: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The null comparisons (raw against the second raw set) by name: the NVE ones and one per principal axis."""
    names = {"L_change_final": "|L(T) − L(0)|", "energy_drift_per_molecule": "energy drift"}
    tests = {f"NVE: {names.get(name, name)}": test for name, test in experiments["nve"].get("null", {}).items()}
    for axis, result in experiments["nvt"].items():
        for test in result.get("null", {}).values():
            tests[f"NVT: orientation of axis {axis} (ℓ ≤ 2)"] = test
    return tests


def _orientation_p(experiments: dict[str, Any], variant: str) -> tuple[float, str, dict[str, Any]]:
    """(Bonferroni p-value over the axes of ``variant``'s orientation bias, the axis with the largest bias, its
    harmonic result); the raw variant pooled with the second raw set where both ran."""
    def harmonic(result: dict[str, Any]) -> dict[str, Any]:
        return result.get("raw_pooled") if variant == "raw" and "raw_pooled" in result else result["variants"][variant]["harmonic"]

    by_axis = {axis: harmonic(result) for axis, result in experiments["nvt"].items()}
    p = min(1.0, len(by_axis) * min(h["p_value"] for h in by_axis.values()))
    largest = max(by_axis, key=lambda axis: by_axis[axis]["bias_kT"]["value"])
    return p, largest, by_axis[largest]


def findings(formula: str, experiments: dict[str, Any], plan: MoleculePlan) -> list[dict[str, Any]]:
    """The molecule's findings, worded for ``formula``: the raw orientation bias, whether each variant leaves none, and
    whether raw NVE changes the angular momentum more than the averaged model."""
    alpha = 1.0 - statistics.DEFAULT_CONFIDENCE
    names = {"averaged": f"averaging over the {plan.grid} grid at every step", "random": "a random rotation at every step",
             "mts": f"multiple time stepping (the {plan.mts_grid} average every {plan.n_inner} steps)"}
    p_raw, axis, h = _orientation_p(experiments, "raw")
    out = [{"key": "orientation_bias", "claim": f"raw NVT of isolated {formula} molecules prefers some lab-frame orientations",
            "holds": bool(p_raw < alpha),
            "evidence": f"largest bias {h['bias_kT']['value']:.3g} ± {h['bias_kT']['error'] or 0:.2g} kT (axis {axis}); "
                        f"p = {p_raw:.3g} over the {len(AXES)} principal axes"}]
    for variant, name in names.items():
        p, axis, h = _orientation_p(experiments, variant)
        out.append({"key": f"{variant}_removes_bias", "claim": f"with {name}, isolated {formula} molecules show no detectable orientation bias",
                    "holds": bool(p >= alpha),
                    "evidence": f"largest bias {h['bias_kT']['value']:.3g} ± {h['bias_kT']['error'] or 0:.2g} kT (axis {axis}); "
                                f"p = {p:.3g} against none"})
    raw, averaged = (experiments["nve"]["variants"][v]["L_change_final"] for v in ("raw", "averaged"))
    test = statistics.difference_significance(raw["value"], raw["error"] or 0.0, averaged["value"], averaged["error"] or 0.0,
                                              dof=experiments["nve"]["n_molecules"] - 1)
    out.append({"key": "angular_momentum", "claim": f"raw NVE of isolated {formula} changes their angular momentum more than "
                f"the {plan.grid} average does", "holds": bool(test["significant"] and test["difference"] > 0),
                "evidence": f"|L(T) − L(0)| after {experiments['nve']['variants']['raw']['duration_ps']:.3g} ps: raw "
                            f"{raw['value']:.3g} ± {raw['error'] or 0:.2g}, averaged {averaged['value']:.3g} ± "
                            f"{averaged['error'] or 0:.2g} eV·fs (p = {test['p_value']:.3g})"})
    return out


# ---------------------------------------------------------------------------------------------------
# The report's section


def orientation_figure(result: dict[str, Any]):
    """Figure: F/kT of each principal axis (rows) for each NVT variant (columns), one colour scale."""
    plt = pyplot()
    variants = list(next(iter(result.values()))["variants"])
    fig, axes = plt.subplots(len(result), len(variants), figsize=(3.2 * len(variants) + 1.0, 2.6 * len(result)), squeeze=False,
                             sharex=True, sharey=True, layout="constrained")
    limit = max(0.3, max(float(np.max(np.abs(data["map"]["free_energy_kT"])))
                         for axis in result.values() for data in axis["variants"].values()))
    for row, (axis, data) in zip(axes, result.items()):
        for ax, variant in zip(row, variants):
            m = data["variants"][variant]["map"]
            image = ax.pcolormesh(m["phi"], m["cos_theta"], np.array(m["free_energy_kT"]), cmap="RdBu_r", vmin=-limit,
                                  vmax=limit, shading="auto")
            bias = data["variants"][variant]["harmonic"]["bias_kT"]["value"]
            ax.set_title(f"axis {axis}, {variant}: bias {bias:.2g} kT", fontsize=8)
        row[0].set_ylabel("cos θ")
    for ax in axes[-1]:
        ax.set_xlabel("φ (rad)")
    fig.colorbar(image, ax=axes[:, -1], label="F/kT")
    return fig


def angular_momentum_figure(nve: dict[str, Any]):
    """Figure: |L(t) − L(0)| (eV·fs, mean over molecules ± standard error) of each NVE variant against time (ps)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.0, 3.4))
    for variant, data in nve["variants"].items():
        c = data["L_change"]
        ax.errorbar(np.array(c["x"]) / 1000, c["y"], yerr=c["error"], label=variant, color=COLOURS.get(variant), lw=1.0,
                    elinewidth=0.5)
    ax.set(xlabel="time (ps)", ylabel="|L(t) − L(0)| (eV·fs)", yscale="symlog", title="isolated molecules in NVE")
    ax.legend(fontsize=7)
    return fig


def _figure(alt: str, fig, caption: str) -> str:
    return (f"<figure><img alt='{alt}' src='data:image/png;base64,{png_base64(fig)}'>"
            f"<figcaption>{html.escape(caption)}</figcaption></figure>")


def _protocol(result: dict[str, Any]) -> str:
    """The section's first paragraph: the relaxed molecule and the runs."""
    exp, formula, plan = result["experiments"], html.escape(result["system"]), result["plan"]
    relaxation = exp["relaxation"]
    moments = ", ".join(f"{m:.3g}" for m in relaxation["moments_amu_A2"])
    return (f"<p>{formula} ({result['n_atoms']} atoms) relaxed with the raw model in {relaxation['steps']} BFGS steps "
            f"(largest force {relaxation['largest_force_eV_per_A']:.3g} eV/Å, energy change {relaxation['energy_change_eV']:.3g} "
            f"eV); principal moments {moments} amu·Å² (axes a, b, c). NVE: {exp['nve']['n_molecules']} molecules per variant "
            f"for {plan['nve_steps'] * 0.5 / 1000:.3g} ps from 300 K; NVT (Langevin, 300 K): {plan['nvt_molecules']} molecules "
            f"per variant for {plan['nvt_steps'] * 0.5 / 1000:.3g} ps. Averaged: the {html.escape(plan['grid'])} grid "
            f"({result['grid']['evaluations']} evaluations).</p>")


def molecule_section(result: dict[str, Any]) -> str:
    """The report's HTML section of a molecule study (:func:`run_molecule`'s result)."""
    exp, formula = result["experiments"], html.escape(result["system"])
    parts = [f"<h2>Isolated molecule: {formula}</h2>", _protocol(result),
             _figure("orientation maps", orientation_figure(exp["nvt"]),
                     "Orientational free energy F/kT of the principal axes in the lab frame (uniform: 0 everywhere)."),
             _figure("angular momentum", angular_momentum_figure(exp["nve"]),
                     "Change of each molecule's angular momentum in NVE (conserved by an invariant model).")]
    rows = []
    for axis, data in exp["nvt"].items():
        for variant, v in data["variants"].items():
            h = v["harmonic"]
            rows.append([axis, variant, h["bias_kT"]["value"], h["bias_kT"]["error"], h["p_value"], h["significant"]])
    parts.append(table("molecule-orientation", f"{formula}: orientation bias (ℓ ≤ 2) of each principal axis in NVT",
                       ["axis", "variant", "bias (kT)", "± (kT)", "p (against none)", "significant"], rows))
    rows = [[variant, v["L_change_final"]["value"], v["L_change_final"]["error"], v["energy_drift_per_molecule"]["value"],
             v["energy_drift_per_molecule"]["error"]] for variant, v in exp["nve"]["variants"].items()]
    parts.append(table("molecule-nve", f"{formula}: NVE angular momentum and energy drift",
                       ["variant", "|L(T) − L(0)| (eV·fs)", "±", "drift (meV/ps per molecule)", "±"], rows))
    return "\n".join(parts)
