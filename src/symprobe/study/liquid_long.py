"""Long liquid runs: raw, random, MTS and a second raw run (another seed), one 64-molecule box each, run as tasks (:mod:`symprobe.cluster`) in the
background and resumed from run to run; their dynamics against each other and against the paper.

:func:`long_liquid_plan` is the study's liquid protocol with one replica per variant and a long run;
:func:`run_long_liquid` runs (or resumes) it through the study's own liquid stage and returns
:func:`summarise` of it: the diffusion coefficient D from the diffusive regime beside the paper's (short of that
regime, an upper bound), the c_uu 1/e decay time (short of it, the time constant of c_uu's exponential tail), and a
verdict on each against raw with the smallest difference the runs could have seen. A longer plan continues the runs
(:func:`lengthen`).
Errors come from the two halves of each run (one replica per variant); the second raw run checks them: raw against
raw must pass as "no difference" (:func:`~symprobe.analysis.statistics.null_calibration`). :func:`mobility` says
whether the liquid has settled: a run whose mobility still drifts after the discarded start has halves that disagree,
and D and the decay time from it describe a relaxation, not the liquid."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from symprobe.analysis import observables, statistics
from symprobe.md.run import lengthen_finished_tasks
from symprobe.models.base import Model
from symprobe.study.liquid import compare_scalars
from symprobe.study.paper import PAPER
from symprobe.study.plan import Plan, parse_mts
from symprobe.study.stages import Context, StageCache, liquid_stage
from symprobe.study.tasks import StudyFarm
from symprobe.study.variants import COMPLETE, REPEAT, step_unit

LONG_LIQUID_VARIANTS = ("mts", "raw", "random", REPEAT)  # MTS, the longest, first: it runs beside the others
TIMESTEP_FS = 0.5
DECAY_MARGIN_FS = 500.0  # c_uu decay times closer than this would not change a liquid-water simulation's conclusions
SUMMARY_VERSION = 4  # what :func:`summarise` computes; a new one recomputes the cached summaries (the MD is kept)
TAIL_START_FS = 1000.0  # c_uu's slow tail is fitted from this lag on, well past the librational drop (~0.2 ps)
EXPONENTIAL_TOLERANCE = 0.25  # the tail's decay rates over the two halves of its window agree within this fraction
RELATIVE_MARGIN = 0.1  # tail decay times, or D bounds, closer than this fraction of raw's would not change a conclusion
MOBILITY_LAG_FS = 1000.0  # the lag of the mobility diagnostic (oxygen MSD over 1 ps, along the run)
STATIONARY_RATIO = 1.25  # the kept part's two halves' mobilities closer than this factor count as stationary


def long_liquid_plan(length_ps: float = 20.0, mts: str = "T/14", equilibration_ps: float = 1.0, seed: int = 0) -> Plan:
    """The study's liquid protocol for :data:`LONG_LIQUID_VARIANTS`: one 64-molecule box (a revPBE0-D3 snapshot of
    the shared data, else a generated box) per variant, NVT at 300 K for ``length_ps`` (ps) in all, of which the
    first ``equilibration_ps`` are discarded; MTS as GRID/N_INNER."""
    mts_grid, n_inner = parse_mts(mts)
    steps = round(length_ps * 1000.0 / TIMESTEP_FS)
    return Plan(quick=True, mts_grid=mts_grid, n_inner=n_inner, seed=seed, liquid_n_per_side=4, liquid_shared_512=False,
                liquid_steps=steps, liquid_equilibration=round(equilibration_ps * 1000.0 / TIMESTEP_FS),
                liquid_stride=20, liquid_variants=LONG_LIQUID_VARIANTS, liquid_replicas=1)


def toy_long_liquid_plan(mts: str = "T/14") -> Plan:
    """:func:`long_liquid_plan` at toy size, seconds on q-TIP4P/F: 0.05 ps (0.01 ps discarded) after 20 steps of
    pre-equilibration (``benchmarks/liquid_long.py --toy`` and the tests)."""
    return dataclasses.replace(long_liquid_plan(0.05, mts, equilibration_ps=0.01), liquid_pre_steps=20)


def md_key(plan: Plan) -> str:
    """The id of ``plan``'s MD: the plan's (:meth:`Plan.key`) less its length and its discarded start, so that a
    longer plan, or one that discards more, continues the same runs (:func:`lengthen`)."""
    return plan.key(without=("liquid_steps", "liquid_equilibration"))


def lengthen(md_root: Path, plan: Plan) -> list[str]:
    """Let the finished runs of the tasks under ``md_root`` that are shorter than ``plan``'s go on from their last
    checkpoint (their old end) to its length (MTS rounded up to whole outer steps, as
    :func:`~symprobe.study.variants.run_variants` does).
    Returns the tasks lengthened; a run already longer raises :class:`~symprobe.checks.ConfigError` (one line)."""

    def wanted(directory: Path) -> int:
        unit = step_unit(json.loads((directory / COMPLETE).read_text())["variants"], plan.n_inner)
        return unit * max(1, -(-plan.liquid_steps // unit))

    return lengthen_finished_tasks(Path(md_root) / "liquid_tasks", wanted)


def run_long_liquid(model: Model, out: Path, plan: Plan, farm: StudyFarm | None = None, progress: bool = True) -> dict[str, Any]:
    """Run (or resume, or lengthen: :func:`lengthen`) ``plan``'s liquid stage of ``model`` under ``out`` (MD in
    ``out/md/<md_key>``; with ``farm``, each variant's run a task on its cluster, the model loaded on the worker from the
    farm's spec) and return its :func:`summarise`, cached in ``out/stages``."""
    out = Path(out)
    md_root = out / "md" / md_key(plan)
    lengthened = lengthen(md_root, plan)
    if lengthened and progress:
        print(f"[liquid_long] lengthening {', '.join(lengthened)} to {plan.liquid_steps * TIMESTEP_FS / 1000:g} ps", flush=True)
    context = Context(model, plan, md_root, progress, farm=farm)
    cache = StageCache(out, plan.key(), progress)
    stage = cache.run("liquid", lambda: liquid_stage(context))
    return cache.run("liquid_long", lambda: summarise(stage, context), key=f"{plan.key()}:summary-{SUMMARY_VERSION}")


def summarise(stage: dict[str, Any], context: Context) -> dict[str, Any]:
    """D and the c_uu decay time of each variant with their errors (two halves of each run), each against raw."""
    variants: dict[str, Any] = {}
    for variant, data in stage["variants"].items():
        frames = context.frames("liquid", f"{variant}/0")
        kept = [f for f in frames if float(f.info["time_fs"]) >= stage["equilibration_steps"] * TIMESTEP_FS]
        directions = _dipole_directions(kept)
        variants[variant] = {"diffusion": data["diffusion"], "diffusion_regime": data["diffusion_regime"],
                             "diffusion_bound": None if data["diffusion_regime"]["reached"] else diffusion_bound(data["msd_O"]),
                             "c_uu_decay": decay_time(directions, data["frame_dt_fs"]),
                             "c_uu_tail": tail_decay_time(directions, data["frame_dt_fs"]), "msd_O": data["msd_O"], "c_uu": data["c_uu"],
                             "temperature": data["temperature"],
                             "mobility": mobility(frames, stage["equilibration_steps"] * TIMESTEP_FS)}
    raw = variants["raw"]

    def against_raw(name: str, variant: str) -> dict[str, Any] | None:
        """``name`` (a tail decay time or a D bound) of ``variant`` against raw's, within RELATIVE_MARGIN of raw's."""
        return compare_scalars(raw[name], variants[variant][name], RELATIVE_MARGIN * raw[name]["value"], dof=1) if raw[name] else None

    verdicts = {variant: {"diffusion": stage["verdicts"][variant].get("diffusion"), "diffusion_bound": against_raw("diffusion_bound", variant),
                          "c_uu_decay": compare_scalars(raw["c_uu_decay"], variants[variant]["c_uu_decay"], DECAY_MARGIN_FS, dof=1),
                          "c_uu_tail": against_raw("c_uu_tail", variant)}
                for variant in variants if variant != "raw"}
    null_tests = {name: test for name, test in verdicts.get(REPEAT, {}).items() if test is not None}
    calibration = statistics.null_calibration(null_tests) if null_tests else None
    return {"n_molecules": stage["n_molecules"], "length_ps": stage["steps"] * TIMESTEP_FS / 1000.0,
            "equilibration_ps": stage["equilibration_steps"] * TIMESTEP_FS / 1000.0, "thermostat": stage["thermostat"],
            "mts": f"{context.plan.mts_grid}/{context.plan.n_inner}", "wall_s": stage["wall_s"], "variants": variants,
            "verdicts": verdicts, "calibration": calibration, "paper": {"diffusion_1e-5_cm2_s": PAPER["liquid_diffusion_1e-5_cm2_s"]},
            "errors_from": "the two halves of each run (one replica per variant): 1 degree of freedom"}


def mobility(frames: list[Atoms], equilibration_fs: float) -> dict[str, Any]:
    """Whether the liquid has settled: the oxygen MSD over :data:`MOBILITY_LAG_FS` (Å²) from the time origins of each
    consecutive 1-ps window of the whole run, and the ratio of its means over the first and second halves of the part
    kept after ``equilibration_fs`` (fs); ``stationary`` when that ratio is within :data:`STATIONARY_RATIO` of 1."""
    times = np.array([float(f.info["time_fs"]) for f in frames])
    positions, cells = observables.trajectory_arrays(frames)
    oxygens = [atom.index for atom in frames[0] if atom.symbol == "O"]
    unwrapped = observables.unwrap_positions(positions[:, oxygens], cells)
    lag = round(MOBILITY_LAG_FS / (times[1] - times[0]))
    starts = range(0, len(frames) - 2 * lag + 1, lag)
    msd = np.array([np.mean(np.sum((unwrapped[k + lag:k + 2 * lag] - unwrapped[k:k + lag]) ** 2, axis=-1)) for k in starts])
    window_fs = times[list(starts)]
    kept = msd[window_fs >= equilibration_fs]
    half = len(kept) // 2
    ratio = float(np.mean(kept[:half]) / np.mean(kept[half:2 * half])) if half else None
    return {"lag_fs": MOBILITY_LAG_FS, "window_start_fs": window_fs.tolist(), "msd_A2": msd.tolist(), "kept_halves_ratio": ratio,
            "stationary": None if ratio is None else bool(1 / STATIONARY_RATIO <= ratio <= STATIONARY_RATIO)}


def decay_time(directions: np.ndarray, frame_dt_fs: float) -> dict[str, Any] | None:
    """The 1/e decay time (fs) of c_uu of unit vectors ``directions`` (n_frames, n_molecules, 3) ``frame_dt_fs`` apart,
    with the standard error of the decay times of the run's two halves (lags up to half of each); None when c_uu stays
    above 1/e in a half (or a half has fewer than 4 frames)."""
    half = len(directions) // 2
    if half < 4:
        return None
    times = []
    for part in (directions[:half], directions[half:2 * half]):
        cuu = observables.orientational_autocorrelation(part, frame_dt_fs, len(part) // 2, n_segments=1)
        times.append(observables.decay_time(cuu.lags, cuu.mean))
    if any(t is None for t in times):
        return None
    mean, error = statistics.mean_and_error(times)
    return {"value": float(mean), "error": float(error), "unit": "fs", "halves_fs": [float(t) for t in times]}


def tail_decay_time(directions: np.ndarray, frame_dt_fs: float) -> dict[str, Any] | None:
    """The time constant τ (fs) of c_uu's slow exponential tail, c_uu ∝ exp(−t/τ) from :data:`TAIL_START_FS` to the
    longest lag, of unit vectors ``directions`` (n_frames, n_molecules, 3) ``frame_dt_fs`` apart: per half of the run
    (lags up to half of each), with their mean and standard error. None when a half's lags do not reach twice
    :data:`TAIL_START_FS`, or its tail is not exponential there (the decay rates over the window's two halves differ by
    more than :data:`EXPONENTIAL_TOLERANCE`). τ is the slow reorientation; it is measured where the 1/e time is
    still out of reach, and exceeds that time by the librational drop."""
    half = len(directions) // 2
    taus, window = [], None
    for part in (directions[:half], directions[half:2 * half]):
        cuu = observables.orientational_autocorrelation(part, frame_dt_fs, len(part) // 2, n_segments=1)
        kept = cuu.lags >= TAIL_START_FS
        if cuu.lags[-1] < 2 * TAIL_START_FS or kept.sum() < 8 or np.any(cuu.mean[kept] <= 0):
            return None
        lags, log_c = cuu.lags[kept], np.log(cuu.mean[kept])
        middle = len(lags) // 2
        rates = [-np.polyfit(lags[piece], log_c[piece], 1)[0] for piece in (slice(0, middle + 1), slice(middle, None))]
        if min(rates) <= 0 or abs(rates[0] - rates[1]) > EXPONENTIAL_TOLERANCE * np.mean(rates):
            return None
        taus.append(-1.0 / np.polyfit(lags, log_c, 1)[0])
        window = [TAIL_START_FS, float(lags[-1])]
    mean, error = statistics.mean_and_error(taus)
    return {"value": float(mean), "error": float(error), "unit": "fs", "halves_fs": [float(t) for t in taus], "window_fs": window}


def diffusion_bound(msd: dict[str, Any]) -> dict[str, Any] | None:
    """An upper bound on D (1e-5 cm²/s) from an oxygen MSD curve (``x`` lags in fs, ``y`` and ``error`` in Å²) that
    has not reached the diffusive regime: MSD/6t at the longest lag, with the MSD's error there. It bounds D while the
    MSD's local exponent there, ln[MSD(t)/MSD(t/2)]/ln 2, is below 1 (MSD/6t still falls towards D); None otherwise."""
    lags, values = np.asarray(msd["x"], dtype=np.float64), np.asarray(msd["y"], dtype=np.float64)
    exponent = float(np.log(values[-1] / np.interp(lags[-1] / 2, lags, values)) / np.log(2.0))
    if not exponent < 1.0:
        return None
    per_A2 = 1e5 * observables.CM2_PER_S_PER_A2_PER_PS / (6.0 * lags[-1] / 1000.0)  # 1e-5 cm²/s per Å² of MSD
    error = msd.get("error")
    return {"value": float(values[-1] * per_A2), "error": None if error is None or error[-1] is None else float(error[-1] * per_A2),
            "unit": "1e-5 cm²/s", "at_lag_fs": float(lags[-1]), "local_exponent": exponent}


def _dipole_directions(frames: list[Atoms]) -> np.ndarray:
    """Dipole unit vectors (n_frames, n_molecules, 3) of the water molecules intact in every frame."""
    positions, cells = observables.trajectory_arrays(frames)
    return observables.dipole_directions(positions, observables.persistent_molecules(frames), cells)


def write_figure(summary: dict[str, Any], path: Path) -> Path:
    """The MSD and c_uu(t) of each variant of ``summary`` (:func:`summarise`) as a PNG at ``path``."""
    from symprobe.pages import pyplot
    from symprobe.study.report import liquid_dynamics_figure

    fig = liquid_dynamics_figure(summary["variants"])
    fig.suptitle(f"{summary['n_molecules']} H2O, {summary['length_ps']:g} ps per variant (first "
                 f"{summary['equilibration_ps']:g} ps discarded), MTS {summary['mts']}", fontsize=9)
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    pyplot().close(fig)
    return Path(path)
