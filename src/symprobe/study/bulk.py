"""The bulk study for any periodic liquid or solid: raw against the symmetrized variants (averaged, random, MTS) and
against a second raw set (the null comparison), with independent replicas, as :mod:`.liquid` does for water.

Every set runs R replicas of the user's structure (own Maxwell–Boltzmann momenta per replica; the variants share
them, :func:`~symprobe.study.variants.replica_seed`) in Bussi NVT at the structure's ``info["temperature_K"]``
(else 300 K), all stepped together by the batched engine. From each replica: g(r) of every species pair, the MSD of
every species with D where the run reaches the diffusive regime (else the MSD at the longest lag, and the regime
said), and, where bonded connectivity finds molecules, the autocorrelation c_uu(t) and orientation bias of each
molecule's axis (:func:`~symprobe.analysis.observables.molecular_axes`). Errors come from the replicas' scatter;
comparisons are :func:`~symprobe.study.liquid.compare_variants`'s, with margins for this system
(:func:`bulk_margins`). Where the model gives stress, the density under NPT of each variant and of the null set
comes from ASE's barostat (:mod:`.npt`; at the structure's ``info["pressure_bar"]``, else 1 bar).
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.analysis import observables, statistics
from symprobe.models.base import Model
from symprobe.study.calibration import gated
from symprobe.study.liquid import (
    MIN_NULL_REPLICAS,
    analysed_run,
    blocked_curve,
    combine_curves,
    combine_scalars,
    combined_regime,
    compare_variants,
    correlation_lags,
    msd_observables,
    orientation_correlation,
    orientation_statistics,
)
from symprobe.study.npt import density_runs, gives_stress
from symprobe.study.plan import batched_stepper, plan_key, timed
from symprobe.study.stages import StageCache
from symprobe.study.variants import REPEAT, VARIANTS, run_groups, scalar

DEFAULT_TEMPERATURE_K = 300.0
MIN_HALF_WIDTH_A = 2.0  # g(r) needs a cell at least 4 Å wide in every direction
DEFAULT_PRESSURE_BAR = 1.0
PROTOCOL = 2  # raised when an experiment's protocol changes, so that no cached stage of an older one is reused
QUICK_STEPS = (100, 20_000)  # fewest and most steps per replica a quick plan gives, NVT and NPT alike
FULL_STEPS = {"nvt": 40_000, "npt": 20_000}
BUDGET_SHARES = {"nvt": 0.55, "npt": 0.3}  # of a quick plan's budget; the rest is for the analysis


@dataclass
class BulkPlan:
    """Run lengths of one bulk study (steps of ``timestep_fs``; every replica runs ``steps``, of which the first
    ``equilibration_steps`` are discarded)."""

    quick: bool = True
    temperature_K: float = DEFAULT_TEMPERATURE_K
    timestep_fs: float = 1.0
    tau_fs: float = 10.0  # Bussi thermostat time constant
    steps: int = 1000
    equilibration_steps: int = 200
    stride: int = 5
    npt_steps: int = 400
    npt_equilibration_steps: int = 100
    pressure_bar: float = DEFAULT_PRESSURE_BAR
    replicas: int = MIN_NULL_REPLICAS
    grid: str = "2i"
    mts_grid: str = "2i"
    n_inner: int = 10
    variants: tuple[str, ...] = VARIANTS
    seed: int = 0
    estimate_s: dict[str, float] = field(default_factory=dict)  # of the NVT and NPT runs, from the measured costs

    def key(self, atoms: Atoms, model: Model) -> str:
        """A short id of the plan, the structure and the model's name (cached stages and MD directories are keyed by
        it)."""
        settings = {k: v for k, v in asdict(self).items() if k != "estimate_s"}
        return plan_key(settings | {"structure": _structure_hash(atoms), "model": model.name}, PROTOCOL)

    def ensemble(self) -> dict[str, Any]:
        """The batched engine's ensemble: Bussi NVT."""
        return {"kind": "nvt-bussi", "temperature_K": self.temperature_K, "tau_fs": self.tau_fs}


def _structure_hash(atoms: Atoms) -> str:
    data = np.concatenate([atoms.numbers.astype(np.float64), atoms.get_positions().ravel(), atoms.cell.array.ravel()])
    return hashlib.sha1(np.round(data, 8).tobytes()).hexdigest()[:12]


def check_bulk(atoms: Atoms, model: Model | None = None) -> None:
    """Raise a one-line ValueError unless ``atoms`` is a bulk system the study can run: a sound structure
    (:func:`~symprobe.structures.check_structure`) of elements ``model`` knows, periodic in all three directions, at
    least two atoms, a cell at least 4 Å wide."""
    from symprobe.structures import check_structure

    name = atoms.get_chemical_formula() or "the structure"
    check_structure(atoms, f"bulk study: {name}", None if model is None else getattr(model, "species", None))
    if len(atoms) < 2:
        raise ValueError(f"bulk study: {name} has {len(atoms)} atom(s); a bulk system needs at least two")
    if not atoms.pbc.all() or atoms.cell.rank < 3:
        raise ValueError(f"bulk study: {name} is not periodic in all three directions (pbc {atoms.pbc.tolist()}); give a "
                         "liquid or solid cell")
    if observables.half_cell_width(atoms) < MIN_HALF_WIDTH_A:
        raise ValueError(f"bulk study: the cell of {name} is {2 * observables.half_cell_width(atoms):.2f} Å wide at its "
                         f"narrowest; it must be at least {2 * MIN_HALF_WIDTH_A:g} Å (repeat it)")


def default_timestep_fs(atoms: Atoms) -> float:
    """0.5 fs with hydrogen (its bond vibrations), else 1 fs."""
    return 0.5 if 1 in atoms.numbers else 1.0


def measure_bulk_costs(model: Model, atoms: Atoms, plan: BulkPlan) -> dict[str, float]:
    """Seconds of wall time per step of one replica of every set (the variants and the null set) stepped together,
    averaged over ``n_inner`` steps (one MTS correction), and per call of the model and of its average over the grid on
    ``atoms`` (NPT steps)."""
    from symprobe.symmetrize import GridAverage

    starts = {f"{variant}/0": [atoms] for variant in (*plan.variants, REPEAT)}
    step = batched_stepper(model, starts, plan.ensemble(), plan.grid, plan.mts_grid, plan.n_inner)
    averaged = GridAverage(model, so3.get(plan.grid))
    return {"step_s_one_replica_per_set": timed(step, plan.n_inner), "call_s": timed(lambda: model.predict(atoms), 3),
            "averaged_call_s": timed(lambda: averaged.predict(atoms), 1)}


def make_bulk_plan(atoms: Atoms, quick: bool, costs: dict[str, float], budget_s: float, seed: int) -> BulkPlan:
    """The plan for ``atoms``: quick, the NVT and NPT steps that :data:`BUDGET_SHARES` of ``budget_s`` buy at the
    measured costs (within :data:`QUICK_STEPS`); full, :data:`FULL_STEPS` per replica. A fifth is equilibration;
    about 200 frames are kept."""
    plan = BulkPlan(quick=quick, timestep_fs=default_timestep_fs(atoms), seed=seed,
                    temperature_K=float(atoms.info.get("temperature_K", DEFAULT_TEMPERATURE_K)),
                    pressure_bar=float(atoms.info.get("pressure_bar", DEFAULT_PRESSURE_BAR)))
    per_step = {"nvt": costs["step_s_one_replica_per_set"] * plan.replicas,
                "npt": plan.replicas * (3 * costs["call_s"] + costs["averaged_call_s"])}  # raw, random, repeat; averaged
    if quick:
        steps = {kind: int(min(max(BUDGET_SHARES[kind] * budget_s / per_step[kind], QUICK_STEPS[0]), QUICK_STEPS[1]))
                 for kind in per_step}
    else:
        steps = FULL_STEPS
    plan.steps, plan.npt_steps = steps["nvt"], steps["npt"]
    plan.equilibration_steps, plan.npt_equilibration_steps = plan.steps // 5, plan.npt_steps // 5
    plan.stride = max(1, plan.steps // 200)
    plan.estimate_s = {"nvt": plan.steps * per_step["nvt"], "npt": plan.npt_steps * per_step["npt"]}
    return plan


def run_bulk(model: Model, atoms: Atoms, out: Path, *, quick: bool = True, budget_s: float = 300.0, seed: int = 0,
             progress: bool = True, plan: BulkPlan | None = None) -> dict[str, Any]:
    """The bulk study of ``atoms`` with ``model`` (docstring of this module), cached in ``out/stages`` and resumable
    (MD checkpoints in ``out/md/<plan id>/bulk``). ``plan`` overrides the planned lengths (else from the measured
    cost and ``budget_s`` seconds, quick, or the full protocol). Returns the JSON-ready result: ``kind``, ``system``,
    ``plan``, ``experiments`` (``bulk``: the runs and comparisons; ``density_npt``: why it is not run),
    ``null_tests`` (raw against raw-repeat) and ``findings``."""
    check_bulk(atoms, model)
    start = atoms.copy()
    start.calc = None
    start.set_momenta(None)
    out = Path(out)
    system = start.get_chemical_formula(mode="hill")
    if plan is None:
        probe = BulkPlan(timestep_fs=default_timestep_fs(start))
        key = f"bulk-costs:{model.name}:{_structure_hash(start)}:{probe.grid}:{probe.mts_grid}/{probe.n_inner}"
        costs = StageCache(out, key, progress).run("bulk_costs", lambda: measure_bulk_costs(model, start, probe), key=key)
        plan = make_bulk_plan(start, quick, costs, budget_s, seed)
        if progress:
            print(f"[bulk] {system}: {plan.steps} NVT and {plan.npt_steps} NPT steps per replica, {plan.replicas} replicas per "
                  f"set, estimated {sum(plan.estimate_s.values()) / 60:.1f} min", flush=True)
    if plan.replicas < 2:
        raise ValueError(f"bulk study: {plan.replicas} replica(s) per set; errors from their scatter need at least two")
    key = plan.key(start, model)
    cache = StageCache(out, key, progress)
    bulk = cache.run("bulk", lambda: bulk_runs(model, start, out / "md" / key / "bulk", plan, progress))
    if gives_stress(model, start):
        npt = cache.run("bulk_npt", lambda: density_runs(
            model, start, out / "md" / key / "bulk_npt", replicas=plan.replicas, temperature_K=plan.temperature_K,
            pressure_bar=plan.pressure_bar, timestep_fs=plan.timestep_fs, steps=plan.npt_steps,
            equilibration_steps=plan.npt_equilibration_steps, stride=max(1, plan.npt_steps // 200), grid=plan.grid, seed=plan.seed,
            progress=progress))
    else:
        npt = {"skipped": f"not run: {model.name} gives no stress for {system}, so no barostat can drive it"}
    experiments = {"bulk": bulk, "density_npt": npt}
    stage_tests = {stage: found for stage, found in ((s, e.get("verdicts", {}).get(REPEAT)) for s, e in experiments.items()) if found}
    gate = statistics.calibration_gate(stage_tests) if stage_tests else None
    return {"kind": "bulk", "system": system, "plan": asdict(plan), "experiments": experiments, "calibration_gate": gate,
            "null_tests": {name: test for tests in stage_tests.values() for name, test in tests.items()},
            "findings": bulk_findings(system, gated(experiments, gate))}


def bulk_runs(model: Model, atoms: Atoms, directory: Path, plan: BulkPlan, progress: bool = True) -> dict[str, Any]:
    """Bussi NVT of R replicas of every variant and of the null set (raw-repeat), all stepped together, each reduced by
    :func:`replica_observables` and combined over its replicas; then every variant compared with raw."""
    import time

    sets = (*plan.variants, REPEAT)
    groups = {f"{variant}/{k}": [atoms] for variant in sets for k in range(plan.replicas)}
    settings = {"grid": plan.grid, "n_inner": plan.n_inner, "mts_grid": plan.mts_grid, "ensemble": plan.ensemble(),
                "steps": plan.steps, "timestep_fs": plan.timestep_fs, "seed": plan.seed, "trajectory_stride": plan.stride,
                "initial_temperature_K": plan.temperature_K}
    begin = time.perf_counter()
    runs = run_groups(model, groups, directory, settings, None, progress)
    found = observables.bonded_molecules(atoms)
    molecules = found.members
    results: dict[str, Any] = {
        "n_atoms": len(atoms), "species": _species(atoms),
        "temperature_K": plan.temperature_K, "timestep_fs": plan.timestep_fs, "steps": plan.steps,
        "equilibration_steps": plan.equilibration_steps, "replicas": plan.replicas,
        "thermostat": f"Bussi SVR, {plan.temperature_K:g} K, tau {plan.tau_fs:g} fs",
        "molecules": {"n": len(molecules), "single_atoms": found.single_atoms, "extended": found.extended,
                      "why_none": None if molecules else _why_no_molecules(found)},
        "wall_s": time.perf_counter() - begin, "variants": {}}
    for variant in sets:
        analysed = [analysed_run(runs[f"{variant}/{k}"], plan.equilibration_steps, plan.stride, plan.timestep_fs)
                    for k in range(plan.replicas)]
        per_replica = [replica_observables(*run, molecules) for run in analysed]
        results["variants"][variant] = combine_bulk_replicas([o for o, _ in per_replica], [u for _, u in per_replica])
    results["margins"] = bulk_margins(results["variants"]["raw"])
    results.update(compare_variants(results, margins=results["margins"]))
    return results


def _why_no_molecules(found: observables.BondedMolecules) -> str:
    parts = [f"{found.extended} bonded network(s) that join themselves through the periodic cell" if found.extended else "",
             f"{found.single_atoms} unbonded atom(s)" if found.single_atoms else ""]
    return ("no molecules: bonded connectivity (1.2 × the sum of covalent radii) finds only "
            + " and ".join(p for p in parts if p) + ", so no per-molecule axis is defined")


def replica_observables(frames: Sequence[Atoms], log: dict[str, np.ndarray], frame_dt_fs: float,
                        molecules: Sequence[np.ndarray]) -> tuple[dict[str, Any], np.ndarray | None]:
    """The observables of one replica's trajectory and its molecules' axes (n_frames, n_molecules, 3) (None without
    molecules): g(r) of every species pair (``g_AB``), the MSD of every species (``msd_A``, Å²) with its value at the
    longest lag (``msd_last_A``), D where the run is diffusive (``diffusion_A``, 1e-5 cm²/s, else None) and its regime,
    c_uu of the molecular axes, the temperature (K) and the drift of the conserved quantity (meV per atom per ps)."""
    first = frames[0]
    r_max = float(min(6.0, np.floor(observables.half_cell_width(first) * 10) / 10))
    out: dict[str, Any] = {"n_frames": len(frames), "frame_dt_fs": frame_dt_fs, "diffusion_regime": {}}
    for (a, b), rdf in observables.radial_distributions(frames, observables.species_pairs(first), r_max, 0.05).items():
        out[f"g_{a}{b}"] = blocked_curve(rdf.r, rdf.g_frames, max(2, min(8, len(frames) // 2)), "Å", "g(r)")
    positions, cells = observables.trajectory_arrays(frames)
    segments, max_lag = correlation_lags(len(frames), frame_dt_fs)
    for symbol in _species(first):
        msd = msd_observables(positions[:, first.symbols == symbol], cells[0], frame_dt_fs, max_lag, segments)
        out[f"msd_{symbol}"], out[f"diffusion_{symbol}"] = msd["msd"], msd["diffusion"]
        out[f"msd_last_{symbol}"] = scalar(msd["msd"]["y"][-1], None, "Å²")
        out["diffusion_regime"][symbol] = msd["diffusion_regime"]
    u = None
    if len(molecules):
        u = observables.molecular_axes(positions, molecules, first.get_masses(), cells[0])
        out.update(orientation_correlation(u, frame_dt_fs, max_lag, segments))
    temperature = statistics.block_average(log["temperature_K"])
    out["temperature"] = scalar(temperature.mean, temperature.stderr, "K")
    drift = observables.conserved_drift(log["time_fs"], log["conserved_eV"], len(first))
    out["drift_per_ps"] = scalar(drift.mev_per_molecule_per_ps.mean, drift.mev_per_molecule_per_ps.error, "meV per atom per ps")
    return out, u


def _species(atoms: Atoms) -> list[str]:
    """The chemical symbols of ``atoms`` in order of atomic number."""
    from ase.data import chemical_symbols

    return [chemical_symbols[z] for z in np.unique(atoms.numbers)]


def combine_bulk_replicas(replicas: Sequence[dict[str, Any]], axes: Sequence[np.ndarray | None]) -> dict[str, Any]:
    """One set's observables from R ≥ 2 replicas (:func:`replica_observables` of each): curves and scalars as the mean
    over replicas with the standard error of their scatter, the diffusive regime of each species' mean MSD, and the
    orientation map and bias of the molecular axes of all replicas pooled (``axis_*``)."""
    first = replicas[0]
    species = list(first["diffusion_regime"])
    curves = [name for name in first if name.startswith(("g_", "msd_")) and not name.startswith("msd_last_")]
    scalars = [*(f"{kind}_{s}" for kind in ("diffusion", "msd_last") for s in species), "temperature", "drift_per_ps"]
    if "c_uu" in first:
        curves.append("c_uu")
        scalars.append("c_uu_last")
    out: dict[str, Any] = {"n_replicas": len(replicas), "n_blocks": len(replicas), "errors_from": "replicas",
                           "n_frames": sum(r["n_frames"] for r in replicas), "frame_dt_fs": first["frame_dt_fs"]}
    out.update(combine_curves(replicas, curves))
    out.update(combine_scalars(replicas, scalars))
    out["diffusion_regime"] = {s: combined_regime(out[f"msd_{s}"], out[f"diffusion_{s}"], [r["diffusion_regime"][s] for r in replicas])
                               for s in species}
    if "c_uu" in first:
        out["c_uu_decay_fs"] = observables.decay_time(out["c_uu"]["x"], out["c_uu"]["y"])
        length = min(len(u) for u in axes)
        out.update(orientation_statistics(np.concatenate([u[:length] for u in axes], axis=1), out["c_uu_decay_fs"], prefix="axis"))
    return out


# Equivalence margins: g(r) per bin and c_uu (dimensionless), the orientation bias (kT); D and the MSD at the longest
# lag within a tenth of raw's value.
G_MARGIN, C_UU_MARGIN, BIAS_MARGIN_KT, RELATIVE_MARGIN = 0.05, 0.05, 0.1, 0.1


def bulk_margins(raw: dict[str, Any]) -> dict[str, float]:
    """The equivalence margin of every compared observable of this system, in its unit, from the raw set's results."""
    margins = {name: G_MARGIN for name in raw if name.startswith("g_")}
    for species in raw["diffusion_regime"]:
        for name in (f"diffusion_{species}", f"msd_last_{species}"):
            if raw[name] is not None and raw[name]["value"] > 0:
                margins[name] = RELATIVE_MARGIN * raw[name]["value"]
    if "c_uu" in raw:
        margins.update({"c_uu_last": C_UU_MARGIN, "axis_bias": BIAS_MARGIN_KT})
    return margins


def bulk_findings(system: str, experiments: dict[str, Any]) -> list[dict[str, Any]]:
    """The bulk study's findings for ``system`` from its ``experiments`` (their calibrations under the study's gate,
    :func:`~symprobe.study.calibration.gated`): the variants agree with raw (family-wise, once the null comparison
    passes), the regime of the dynamics, the molecular axes' orientation bias, and the density under NPT."""
    bulk = experiments["bulk"]
    out: list[dict[str, Any]] = []

    def add(key: str, claim: str, holds: bool | None, evidence: str) -> None:
        out.append({"key": key, "claim": claim, "holds": holds, "evidence": evidence})

    variants = [v for v in bulk["verdicts"] if v != REPEAT]
    tests = {f"{v}:{name}": test for v in variants for name, test in bulk["verdicts"][v].items()}
    calibration = bulk.get("calibration")
    claim = f"{system} bulk observables of the {', '.join(variants)} runs agree with raw within errors"
    if not tests:
        add("bulk_variants_agree", claim, None, "no comparisons")
    elif calibration is None or not calibration["passed"]:
        add("bulk_variants_agree", claim, None, "no verdict: the null comparison (raw against a second raw set) is "
            + (calibration["verdict"] if calibration else "missing"))
    else:
        family = statistics.family_significance(tests)
        not_equivalent = [name for name, test in tests.items() if not test.get("equivalent", False)]
        add("bulk_variants_agree", claim, not family["significant"],
            f"{family['n_tests']} comparisons, family-wise at 95 % confidence (Bonferroni): significant: "
            f"{', '.join(family['significant']) or 'none'}; null comparison {calibration['verdict']}; equivalence within the "
            f"stated margins not shown for: {', '.join(not_equivalent) or 'none'}")
    regimes = bulk["variants"]["raw"]["diffusion_regime"]
    reached = [s for s, r in regimes.items() if r["reached"]]
    add("bulk_diffusive", f"The raw {system} runs reach the diffusive regime (MSD ∝ t) for every species",
        len(reached) == len(regimes), "; ".join(_regime_text(s, r, bulk["variants"]["raw"].get(f"diffusion_{s}"))
                                                for s, r in regimes.items()))
    raw = bulk["variants"]["raw"]
    claim = f"The molecular axes of {system} show no orientation bias in the lab frame with the raw model"
    if "axis_bias" not in raw:
        add("bulk_axis_unbiased", claim, None, bulk["molecules"]["why_none"] or "no persistent molecules")
    elif raw["axis_bias"]["significant"] is None:
        add("bulk_axis_unbiased", claim, None, raw["axis_bias"]["why_not"])
    else:
        bias = raw["axis_bias"]
        add("bulk_axis_unbiased", claim, not bias["significant"],
            f"largest |F| of the ℓ ≤ 2 fit {_value(bias['bias_kT'])} kT (Hotelling T², p = {bias['p_value']:.2g})")
    add("bulk_density_npt", *_density_finding(system, experiments["density_npt"]))
    return out


def _density_finding(system: str, npt: dict[str, Any]) -> tuple[str, bool | None, str]:
    """(claim, holds, evidence) of the densities under NPT."""
    if "skipped" in npt:
        return f"The density of {system} under NPT agrees between raw and the symmetrized variants", None, npt["skipped"]
    variants = [v for v in npt["verdicts"] if v != REPEAT]
    claim = f"The density of {system} under NPT ({npt['barostat']}) of the {', '.join(variants)} runs agrees with raw"
    calibration = npt["calibration"]
    if calibration is None or not calibration["passed"]:
        return claim, None, "no verdict: the null comparison is " + (calibration["verdict"] if calibration else "missing")
    tests = {v: npt["verdicts"][v]["density"] for v in variants if "density" in npt["verdicts"][v]}
    family = statistics.family_significance(tests) if tests else None
    raw = npt["variants"]["raw"]["density"]
    unsettled = [v for v, data in npt["variants"].items() if not data["settled"]]
    evidence = (f"raw {_value(raw, 4)} g/cm³; " + "; ".join(f"{v} {_value(npt['variants'][v]['density'], 4)} g/cm³ "
                                                             f"(p = {tests[v]['p_value']:.2g})" for v in tests)
                + f"; null comparison {calibration['verdict']}"
                + (f"; the density had not settled in {', '.join(unsettled)} (it changed by "
                   f"{_value(npt['variants'][unsettled[0]]['drift'], 3)} g/cm³ from the first to the second half of the kept "
                   "part), so these are averages over the approach to equilibrium, equal for every set only in expectation"
                   if unsettled else ""))
    return claim, None if family is None else not family["significant"], evidence


def _value(obs: dict[str, Any] | None, digits: int = 3) -> str:
    if obs is None:
        return "–"
    text = f"{obs['value']:.{digits}g}"
    return text if obs.get("error") is None else f"{text} ± {obs['error']:.2g}"


def _regime_text(species: str, regime: dict[str, Any], diffusion: dict[str, Any] | None) -> str:
    if regime["reached"]:
        start, end = regime["fit_window_fs"]
        return f"{species}: diffusive from {start:.0f} to {end:.0f} fs, D = {_value(diffusion)} 1e-5 cm²/s"
    return (f"{species}: not diffusive within the run (MSD {regime['msd_at_longest_lag_A2']:.3g} Å² at the longest lag, "
            f"{regime['longest_lag_fs']:.0f} fs)")


# ---------------------------------------------------------------------------------------------------
# Report


def bulk_section(result: dict[str, Any]) -> str:
    """The bulk study's HTML section: its setting, g(r), MSD and c_uu figures, the comparisons with raw, the null
    comparison (under the study's gate) and the findings."""
    from symprobe.pages import png_base64, table

    experiments = gated(result["experiments"], result.get("calibration_gate"))
    bulk = experiments["bulk"]
    system = html.escape(result["system"])
    molecules = bulk["molecules"]
    parts = [f"<h2 id='bulk'>Bulk {system}</h2>",
             f"<p>{bulk['n_atoms']} atoms; {len(bulk['variants'])} sets of {bulk['replicas']} independent replicas "
             f"({html.escape(', '.join(bulk['variants']))}), each {bulk['steps']} steps of {bulk['timestep_fs']:g} fs, the first "
             f"{bulk['equilibration_steps']} discarded; {html.escape(bulk['thermostat'])}. Errors are the standard errors of "
             f"the replicas' scatter. "
             + (f"{molecules['n']} molecules found by bonded connectivity; their axis runs from the heaviest atom to the "
                "centre of mass." if molecules["n"] else html.escape(molecules["why_none"])) + "</p>"]
    for figure in (rdf_figure(bulk), dynamics_figure(bulk)):
        parts.append(f"<figure><img alt='bulk figure' src='data:image/png;base64,{png_base64(figure)}'></figure>")
    rows = [[variant, html.escape(name), float(test["p_value"]), "yes" if test["significant"] else "no",
             "yes" if test.get("equivalent") else "no", f"±{test['margin']:.3g}", test.get("detectable_effect")]
            for variant, row in bulk["verdicts"].items() for name, test in row.items()]
    parts.append(table("bulk-comparisons", f"{system}: each set against raw (95 % confidence); raw-repeat is the null comparison",
                       ["set", "observable", "p", "differs", "equivalent", "margin", "detectable effect"], rows))
    axes = "axis_bias" in bulk["variants"]["raw"]
    rows = [[variant, _value(data["temperature"], 4), _value(data["drift_per_ps"], 2)]
            + ([_value(data["axis_bias"]["bias_kT"], 2), data["c_uu_decay_fs"]] if axes else [])
            for variant, data in bulk["variants"].items()]
    parts.append(table("bulk-sets", f"{system}: each set's temperature, drift of the thermostat's conserved quantity"
                       + (", and its molecular axes' orientation bias (ℓ ≤ 2) and c_uu 1/e time (– when not reached)" if axes else ""),
                       ["set", "T (K)", "drift (meV/atom/ps)"] + (["axis bias (kT)", "c_uu decay (fs)"] if axes else []), rows))
    calibration = bulk.get("calibration")
    parts.append(f"<p id='bulk-null'>Null comparison: {html.escape(calibration['verdict'] if calibration else 'none')}.</p>")
    raw = bulk["variants"]["raw"]
    regime_rows = [[s, "reached" if r["reached"] else "not reached", r["longest_lag_fs"], r["msd_at_longest_lag_A2"],
                    _value(raw.get(f"diffusion_{s}"))] for s, r in raw["diffusion_regime"].items()]
    parts.append(table("bulk-regime", f"{system}: the raw runs' dynamics per species",
                       ["species", "diffusive regime", "longest lag (fs)", "MSD there (Å²)", "D (1e-5 cm²/s)"], regime_rows))
    npt = experiments["density_npt"]
    if "skipped" in npt:
        parts.append(f"<p>Density under NPT: {html.escape(npt['skipped'])}.</p>")
    else:
        parts.append(f"<figure><img alt='bulk density' src='data:image/png;base64,{png_base64(density_figure(npt))}'></figure>")
        rows = [[variant, _value(data["density"], 4), f"{'yes' if data['settled'] else 'no'} ({_value(data['drift'], 2)})",
                 "–" if variant == "raw" else
                 html.escape(npt["verdicts"][variant]["density"]["verdict"]) if "density" in npt["verdicts"].get(variant, {}) else "–"]
                for variant, data in npt["variants"].items()]
        parts.append(table("bulk-density", f"{system}: density under NPT ({npt['barostat']}; {npt['replicas']} replicas of "
                           f"{npt['steps']} steps of {npt['timestep_fs']:g} fs, the first {npt['equilibration_steps']} discarded); "
                           f"{npt['not_run']['mts']}", ["set", "density (g/cm³)", "settled (change between halves, g/cm³)", "against raw"], rows))
    findings = [[html.escape(f["claim"]), "not tested" if f["holds"] is None else ("holds" if f["holds"] else "does NOT hold"),
                 html.escape(f["evidence"])] for f in result["findings"]]
    parts.append(table("bulk-findings", f"Findings for {system}", ["finding", "here", "evidence"], findings))
    return "\n".join(parts)


PANELS_PER_ROW = 4


def _panels(n: int):
    """A figure of ``n`` panels, :data:`PANELS_PER_ROW` to a row, and its first ``n`` axes (the others hidden)."""
    from symprobe.pages import pyplot

    rows, columns = -(-n // PANELS_PER_ROW), min(n, PANELS_PER_ROW)
    fig, axes = pyplot().subplots(rows, columns, figsize=(4.2 * columns, 3.4 * rows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.set_visible(False)
    return fig, list(axes.ravel()[:n])


def rdf_figure(bulk: dict[str, Any]):
    """Figure: g(r) of every species pair (r in Å), one panel each, every set with its error band."""
    from symprobe.study.report import COLOURS, curve_band

    names = [name for name in bulk["variants"]["raw"] if name.startswith("g_")]
    fig, axes = _panels(len(names))
    for ax, name in zip(axes, names):
        for variant, data in bulk["variants"].items():
            curve_band(ax, data[name], variant, COLOURS.get(variant))
        ax.set(xlabel="r (Å)", ylabel="g(r)", title=name.replace("_", " "))
        ax.legend(fontsize=7)
    return fig


def dynamics_figure(bulk: dict[str, Any]):
    """Figure: the MSD (Å²) of every species against t (ps), and c_uu(t) of the molecular axes where there are
    molecules, every set with its error band."""
    from symprobe.study.report import COLOURS, curve_band

    raw = bulk["variants"]["raw"]
    species = list(raw["diffusion_regime"])
    panels = len(species) + ("c_uu" in raw)
    fig, axes = _panels(panels)
    for ax, s in zip(axes, species):
        for variant, data in bulk["variants"].items():
            curve_band(ax, data[f"msd_{s}"], variant, COLOURS.get(variant), 1e-3)
        ax.set(xlabel="t (ps)", ylabel="MSD (Å²)", title=f"{s} mean-squared displacement")
        ax.legend(fontsize=7)
    if "c_uu" in raw:
        ax = axes[panels - 1]
        for variant, data in bulk["variants"].items():
            curve_band(ax, data["c_uu"], variant, COLOURS.get(variant), 1e-3)
        ax.set(xlabel="t (ps)", ylabel="c_uu(t)", title="molecular-axis autocorrelation")
        ax.legend(fontsize=7)
    return fig


def density_figure(npt: dict[str, Any]):
    """Figure: the density (g/cm³) under NPT of every set against t (ps), mean over replicas with its error band."""
    from symprobe.pages import pyplot
    from symprobe.study.report import COLOURS, curve_band

    fig, ax = pyplot().subplots(figsize=(6, 3.4))
    for variant, data in npt["variants"].items():
        curve_band(ax, data["density_curve"], variant, COLOURS.get(variant), 1e-3)
    ax.set(xlabel="t (ps)", ylabel="density (g/cm³)", title="density under NPT")
    ax.legend(fontsize=7)
    return fig
