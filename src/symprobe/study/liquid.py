"""Liquid water at 300 K: the interpolative case of the paper.

:func:`starting_box` gives the initial configuration (the paper's 512-molecule box from the shared data,
or a generated 64-molecule box pre-equilibrated with q-TIP4P/F); :func:`liquid_runs` runs NVT (Bussi
stochastic velocity rescaling, τ = 10 fs, 0.5 fs) for each variant and reduces every trajectory with
:func:`liquid_observables`; :func:`compare_variants` gives the verdicts raw vs each other variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from ase import Atoms

from symprobe.analysis import observables, statistics
from symprobe.study.variants import REPEAT, GroupRunner, curve, read_trajectory, run_groups, run_variants, scalar
from symprobe.models.base import Model
from symprobe.structures import read_structures, shared_data_dir, water_box

ENSEMBLE = {"kind": "nvt-bussi", "temperature_K": 300.0, "tau_fs": 10.0}


def starting_box(directory: Path, n_per_side: int, use_shared_512: bool, pre_steps: int, seed: int, progress: bool = True,
                 fresh: bool = False) -> tuple[Atoms, str]:
    """(structure, description): the shared 512-molecule box when ``use_shared_512`` and present, else
    ``water_box(n_per_side)``, pre-equilibrated by ``pre_steps`` NVT steps of q-TIP4P/F (a cheap, physically
    sensible water model; the studied model then equilibrates it further). The shared box is used as it is
    unless ``fresh``: then it too is re-equilibrated, for an independent start."""
    from symprobe.models.qtip4pf import qtip4pf

    data = shared_data_dir()
    shared = None if data is None else data / "structures" / "water_liquid_512_init.extxyz"
    if use_shared_512 and shared is not None and shared.exists():
        box, origin = read_structures(shared)[-1], "the paper's 512-molecule box (shared data, water_liquid_512_init.extxyz)"
        if not fresh:
            return box, origin
    else:
        box, origin = water_box(n_per_side, seed=seed), f"{n_per_side ** 3} H2O on a lattice (symprobe.structures.water_box)"
    runs = run_variants(qtip4pf(), {"raw": [box]}, Path(directory), grid="0", n_inner=1, ensemble=ENSEMBLE, steps=pre_steps,
                        timestep_fs=0.5, seed=seed, trajectory_stride=pre_steps, initial_temperature_K=300.0, progress=progress)
    atoms = read_trajectory(runs["raw"])[-1]
    atoms.calc = None
    atoms.set_momenta(None)
    atoms.info = {"name": f"water box {len(atoms) // 3} H2O"}
    return atoms, f"{origin}, {pre_steps} steps of q-TIP4P/F NVT (seed {seed})"


def liquid_observables(frames: Sequence[Atoms], log: dict[str, np.ndarray], frame_dt_fs: float, n_blocks: int) -> dict[str, Any]:
    """Every liquid observable of one trajectory, with errors from ``n_blocks`` contiguous blocks (curves keep
    their blocks, for correlation-aware comparisons). Dynamics are reported only in the regime the run reaches:
    D from the diffusive window of the MSD (else the MSD at the longest lag), the c_uu decay time when c_uu
    falls below 1/e, and the dipole orientation map's test only when the molecules have reoriented."""
    out, u = replica_observables(frames, log, frame_dt_fs, n_blocks)
    out.update(orientation_statistics(u, out["c_uu_decay_fs"]))
    return out


def replica_observables(frames: Sequence[Atoms], log: dict[str, np.ndarray], frame_dt_fs: float,
                        n_blocks: int) -> tuple[dict[str, Any], np.ndarray]:
    """:func:`liquid_observables` of one trajectory but the dipole orientations, and the molecules' dipole
    directions (n_frames, n_molecules, 3)."""
    n_blocks = max(2, min(n_blocks, len(frames) // 2))
    half_width = 0.5 * min(frames[0].cell.lengths())
    r_max = float(min(6.0, np.floor(half_width * 10) / 10))
    out: dict[str, Any] = {"n_frames": len(frames), "n_blocks": n_blocks, "frame_dt_fs": frame_dt_fs, "errors_from": "blocks"}
    rdfs = observables.radial_distributions(frames, r_max=r_max, bin_width=0.05)
    for (a, b), rdf in rdfs.items():
        out[f"g_{a}{b}"] = blocked_curve(rdf.r, rdf.g_frames, n_blocks, "Å", "g(r)")
    triples = observables.persistent_molecules(frames)
    positions, cells = observables.trajectory_arrays(frames)
    u = observables.dipole_directions(positions, triples, cells)
    correlations = observables.dipole_correlations(frames, r_max=r_max, bin_width=0.2)
    for name, sums in (("c_L", correlations.longitudinal_sums), ("c_T", correlations.transverse_sums)):
        out[name] = blocked_curve(correlations.r, sums, n_blocks, "Å", "dimensionless", counts=correlations.pair_counts)
    out["n_molecules"] = int(len(triples))
    out.update(_dynamics(positions[:, triples[:, 0]], cells[0], u, frame_dt_fs))
    drift = observables.conserved_drift(log["time_fs"], log["conserved_eV"], len(triples))
    out["drift_per_500ps"] = scalar(drift.per_500ps.mean, drift.per_500ps.error, "meV per H2O per 500 ps")
    out["conserved"] = curve(log["time_fs"], (log["conserved_eV"] - log["conserved_eV"][0]) * 1000.0 / len(triples), None,
                             "fs", "meV per H2O")
    temperature = statistics.block_average(log["temperature_K"])
    out["temperature"] = scalar(temperature.mean, temperature.stderr, "K")
    return out, u


def combine_replicas(replicas: Sequence[dict[str, Any]], directions: Sequence[np.ndarray]) -> dict[str, Any]:
    """One variant's observables from R ≥ 2 independent replicas (:func:`replica_observables` of each, and
    their dipole directions): every curve and scalar is the mean over replicas with the standard error of
    their scatter (the replica curves are kept as ``blocks``); D is fitted in the diffusive window of the
    mean MSD, in each replica; the dipole orientations pool the molecules of all replicas."""
    n = len(replicas)
    first = replicas[0]
    out: dict[str, Any] = {"n_replicas": n, "n_frames": sum(r["n_frames"] for r in replicas), "n_blocks": n,
                           "frame_dt_fs": first["frame_dt_fs"], "errors_from": "replicas",
                           "n_molecules": sum(r["n_molecules"] for r in replicas)}
    out.update(combine_curves(replicas, (*CURVES, "msd_O", "c_uu")))
    out.update(combine_scalars(replicas, ("c_uu_last", "temperature", "drift_per_500ps", "diffusion", "c_uu_at_paper_lag")))
    out["c_uu_last_lag_fs"] = first["c_uu_last_lag_fs"]
    out["diffusion_regime"] = combined_regime(out["msd_O"], out["diffusion"], [r["diffusion_regime"] for r in replicas])
    out["c_uu_decay_fs"] = observables.decay_time(out["c_uu"]["x"], out["c_uu"]["y"])
    out["conserved"] = first["conserved"]
    length = min(len(u) for u in directions)
    out.update(orientation_statistics(np.concatenate([u[:length] for u in directions], axis=1), out["c_uu_decay_fs"]))
    return out


def combine_curves(replicas: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Each named curve of R ≥ 2 replicas as their mean with the standard error of their scatter, on the lags
    they share (the replica curves kept as ``blocks``)."""
    out = {}
    for name in names:
        length = min(len(r[name]["x"]) for r in replicas)
        values = np.array([r[name]["y"][:length] for r in replicas])
        mean, error = statistics.blocks_mean_and_error(values)
        first = replicas[0][name]
        out[name] = curve(first["x"][:length], mean, error, first["x_unit"], first["y_unit"], blocks=values)
    return out


def combine_scalars(replicas: Sequence[dict[str, Any]], names: Sequence[str]) -> dict[str, Any]:
    """Each named scalar of R ≥ 2 replicas as their mean with the standard error of their scatter (None when a
    replica has none, e.g. D outside the diffusive regime)."""
    out = {}
    for name in names:
        values = [r[name] for r in replicas]
        out[name] = (None if any(v is None for v in values) else
                     scalar(*statistics.mean_and_error([v["value"] for v in values]), values[0]["unit"]))
    return out


def combined_regime(msd: dict[str, Any], diffusion: dict[str, Any] | None, per_replica: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The diffusive regime of replicas combined: the window of their mean ``msd`` curve (fs), each replica's
    window, and the MSD at the longest lag (Å²); reached when every replica gave D."""
    window = observables.diffusive_window(msd["x"], msd["y"])
    return {"reached": diffusion is not None, "fit_window_fs": None if window is None else list(window),
            "per_replica_windows_fs": [r["fit_window_fs"] for r in per_replica],
            "longest_lag_fs": float(msd["x"][-1]), "msd_at_longest_lag_A2": float(msd["y"][-1])}


def blocked_curve(x: np.ndarray, per_frame: np.ndarray, n_blocks: int, x_unit: str, y_unit: str,
                  counts: np.ndarray | None = None) -> dict[str, Any]:
    """A :func:`~symprobe.study.variants.curve` of per-frame values (or sums, with ``counts``) over ``n_blocks``
    contiguous blocks of frames, with the blocks kept."""
    mean, error = statistics.curve_mean_and_error(per_frame, n_blocks, counts=counts)
    return curve(x, mean, error, x_unit, y_unit, blocks=statistics.curve_blocks(per_frame, n_blocks, counts=counts))


def _dynamics(oxygen_positions: np.ndarray, cell: np.ndarray, u: np.ndarray, frame_dt_fs: float) -> dict[str, Any]:
    """MSD and D (only in the diffusive regime), c_uu(t), its 1/e decay time (only when covered) and c_uu at
    the paper's lag of 2000 fs (only when reached); errors over two halves of the run."""
    segments, max_lag = correlation_lags(len(u), frame_dt_fs)
    msd = msd_observables(oxygen_positions, cell, frame_dt_fs, max_lag, segments)
    out: dict[str, Any] = {"msd_O": msd["msd"], "diffusion_regime": msd["diffusion_regime"], "diffusion": msd["diffusion"]}
    out.update(orientation_correlation(u, frame_dt_fs, max_lag, segments))
    cuu = out["c_uu"]
    reached = cuu["x"][-1] >= PAPER_C_UU_LAG_FS
    out["c_uu_at_paper_lag"] = (scalar(float(np.interp(PAPER_C_UU_LAG_FS, cuu["x"], cuu["y"])), None, "dimensionless")
                                if reached else None)
    return out


def correlation_lags(n_frames: int, frame_dt_fs: float) -> tuple[int, int]:
    """(segments, longest lag in frames) of a run's time correlations: two halves from 20 frames on (their
    scatter gives the errors), lags up to 40 % of a segment."""
    duration = frame_dt_fs * (n_frames - 1)
    segments = 2 if n_frames >= 20 else 1
    return segments, max(2, int(0.4 * duration / segments / frame_dt_fs))


def msd_observables(positions: np.ndarray, cell: np.ndarray, frame_dt_fs: float, max_lag: int, segments: int) -> dict[str, Any]:
    """The MSD (Å²) of wrapped ``positions`` (n_frames, n_atoms, 3) Å in a fixed ``cell``, its regime (the diffusive
    window, or the MSD at the longest lag when the run does not reach it) and D (1e-5 cm²/s, only in that window);
    errors over ``segments`` consecutive pieces of the run."""
    unwrapped = observables.unwrap_positions(positions, cell)
    msd = observables.mean_squared_displacement(unwrapped, frame_dt_fs, max_lag, n_segments=segments)
    window = observables.diffusive_window(msd.lags, msd.mean)
    out: dict[str, Any] = {"msd": curve(msd.lags, msd.mean, msd.error, "fs", "Å²"),
                           "diffusion_regime": {"reached": window is not None, "fit_window_fs": None if window is None else list(window),
                                                "longest_lag_fs": float(msd.lags[-1]), "msd_at_longest_lag_A2": float(msd.mean[-1])},
                           "diffusion": None}
    if window is not None:
        diffusion = observables.diffusion_coefficient(unwrapped, frame_dt_fs, *window, n_segments=segments)
        out["diffusion"] = scalar(diffusion.cm2_per_s.mean * 1e5, diffusion.cm2_per_s.error * 1e5 if segments > 1 else None,
                                  "1e-5 cm²/s")
    return out


def orientation_correlation(u: np.ndarray, frame_dt_fs: float, max_lag: int, segments: int) -> dict[str, Any]:
    """c_uu(t) of unit vectors (n_frames, n_molecules, 3), its value at the longest lag and its 1/e decay time (fs,
    None when the run does not cover it); errors over ``segments`` consecutive pieces of the run."""
    cuu = observables.orientational_autocorrelation(u, frame_dt_fs, max_lag, n_segments=segments)
    return {"c_uu": curve(cuu.lags, cuu.mean, cuu.error, "fs", "dimensionless"),
            "c_uu_last": scalar(float(cuu.mean[-1]), float(cuu.error[-1]) if segments > 1 else None, "dimensionless"),
            "c_uu_last_lag_fs": float(cuu.lags[-1]), "c_uu_decay_fs": observables.decay_time(cuu.lags, cuu.mean)}


PAPER_C_UU_LAG_FS = 2000.0  # the lag at which the paper quotes c_uu


def orientation_statistics(u: np.ndarray, decay_fs: float | None, prefix: str = "dipole") -> dict[str, Any]:
    """The orientation map of the molecules' unit vectors ``u`` (n_frames, n_molecules, 3) and its low-order bias, under
    ``PREFIX_map_max_deviation``, ``PREFIX_map_noise`` (kT) and ``PREFIX_bias``. The flatness test treats each
    molecule's time average as one independent sample, which holds only once molecules have reoriented (c_uu below
    1/e within the run, ``decay_fs`` not None); otherwise the map reflects the starting orientations and the test is
    not made."""
    from symprobe.study.gas import harmonic_orientation_bias

    omap = observables.orientational_free_energy(u.reshape(-1, 3), bandwidth=0.1 if u.shape[0] * u.shape[1] > 50000 else 0.3,
                                                 n_cos=25, n_phi=49)
    bias = harmonic_orientation_bias(u)
    testable = decay_fs is not None
    bias["testable"] = testable
    bias["why_not"] = None if testable else ("the molecules have not reoriented in this run (c_uu stays above 1/e), so "
                                             "the map reflects the starting orientations; it cannot tell whether the map is flat")
    if not testable:
        bias["significant"] = None
    return {f"{prefix}_map_max_deviation": scalar(min(omap.max_deviation, 10.0), None, "kT"),
            f"{prefix}_map_noise": scalar(omap.noise, None, "kT (independent samples)"), f"{prefix}_bias": bias}


def liquid_runs(
    model: Model, starts: Mapping[str, Sequence[Atoms]], directory: Path, *, steps: int, equilibration_steps: int,
    grid: str, n_inner: int, seed: int, trajectory_stride: int, n_blocks: int, mts_grid: str | None = None,
    progress: bool = True, runner: GroupRunner | None = None,
) -> dict[str, Any]:
    """NVT runs of every variant from its starting boxes (``starts``: variant → one box per independent replica;
    velocities at 300 K), all stepped together (or each replica a task of ``runner``,
    :func:`symprobe.study.tasks.group_farm`); the first ``equilibration_steps`` are discarded from the
    analysis. Errors come from the replicas' scatter when a variant has two or more (:func:`combine_replicas`),
    else from ``n_blocks`` blocks of its one run. Returns per-variant observables and the wall time."""
    import time

    groups = {f"{variant}/{k}": [atoms] for variant, boxes in starts.items() for k, atoms in enumerate(boxes)}
    first_box = next(iter(groups.values()))[0]
    results: dict[str, Any] = {"n_molecules": len(first_box) // 3, "steps": steps, "equilibration_steps": equilibration_steps,
                               "replicas": {variant: len(boxes) for variant, boxes in starts.items()},
                               "timestep_fs": 0.5, "thermostat": "Bussi SVR, 300 K, tau 10 fs", "variants": {}}
    settings = {"grid": grid, "n_inner": n_inner, "mts_grid": mts_grid, "ensemble": ENSEMBLE, "steps": steps, "timestep_fs": 0.5,
                "seed": seed, "trajectory_stride": trajectory_stride, "initial_temperature_K": 300.0}
    begin = time.perf_counter()
    runs = run_groups(model, groups, directory, settings, runner, progress)
    results["wall_s"] = time.perf_counter() - begin
    for variant, boxes in starts.items():
        analysed = [analysed_run(runs[f"{variant}/{k}"], equilibration_steps, trajectory_stride) for k in range(len(boxes))]
        if len(analysed) == 1:
            results["variants"][variant] = liquid_observables(*analysed[0], n_blocks)
        else:
            per_replica = [replica_observables(*run, n_blocks) for run in analysed]
            results["variants"][variant] = combine_replicas([o for o, _ in per_replica], [u for _, u in per_replica])
    return results


def analysed_run(directory: Path, equilibration_steps: int, trajectory_stride: int,
                 timestep_fs: float = 0.5) -> tuple[list[Atoms], dict[str, np.ndarray], float]:
    """(frames, log, frame interval fs) of one run after its first ``equilibration_steps`` steps of ``timestep_fs``."""
    from symprobe.md import read_log

    frames = read_trajectory(directory)
    times = np.array([float(f.info["time_fs"]) for f in frames])
    kept = [f for f, t in zip(frames, times) if t >= equilibration_steps * timestep_fs]
    log = read_log(directory)
    mask = log["time_fs"] >= equilibration_steps * timestep_fs
    frame_dt = float(np.median(np.diff(times))) if len(times) > 1 else timestep_fs * trajectory_stride
    return kept, {key: value[mask] for key, value in log.items()}, frame_dt


# Equivalence margins, in each observable's unit: differences smaller than these would not change a
# liquid-water simulation's conclusions (g(r) and c_L, c_T per bin; D about 10 % of the paper's 2.7e-5 cm²/s).
MARGINS = {"g_OO": 0.05, "g_OH": 0.05, "g_HH": 0.05, "c_L": 0.02, "c_T": 0.02, "diffusion": 0.3, "c_uu_last": 0.05,
           "dipole_bias": 0.1}
CURVES = ("g_OO", "g_OH", "g_HH", "c_L", "c_T")


def compare_curves(a: dict[str, Any], b: dict[str, Any], margin: float) -> dict[str, Any]:
    """Two blocked curves on the same bins: the largest per-bin deviation (Bonferroni) and the correlation-aware
    χ² of the blocks (permutation), combined as one test (p = twice the smaller p-value); the equivalence of
    every bin within ``margin`` (intersection-union TOST: all bins must pass, no multiplicity correction)."""
    common = np.intersect1d(np.round(a["x"], 6), np.round(b["x"], 6))
    on_a, on_b = np.isin(np.round(a["x"], 6), common), np.isin(np.round(b["x"], 6), common)
    ya, ea, yb, eb = (np.asarray(c[key], dtype=np.float64)[on] for c, on in ((a, on_a), (b, on_b)) for key in ("y", "error"))
    blocks_a, blocks_b = (np.asarray(c["blocks"], dtype=np.float64)[:, on] for c, on in ((a, on_a), (b, on_b)))  # None → NaN
    n_blocks = min(len(blocks_a), len(blocks_b))
    deviation = statistics.curve_difference_significance(ya, ea, yb, eb, dof=max(1, n_blocks - 1))
    chi2 = statistics.curve_permutation_test(blocks_a, blocks_b)
    p_value = float(min(1.0, 2.0 * min(deviation["min_p_value"] * deviation["n_bins"], chi2["p_value"])))
    bins = [statistics.equivalence_test(x, ex, y, ey, margin, dof=max(1, n_blocks - 1)) for x, ex, y, ey in zip(ya, ea, yb, eb)
            if np.isfinite([x, ex, y, ey]).all()]
    bound = max(t["bound"] for t in bins)
    significant = p_value < 1.0 - statistics.DEFAULT_CONFIDENCE
    return {"max_deviation": deviation, "chi2": chi2, "p_value": p_value, "chi2_per_dof": chi2["chi2_per_dof"],
            "significant": significant, "detectable_effect": deviation["detectable_effect"],
            "equivalent": all(t["equivalent"] for t in bins), "margin": margin, "bound": bound,
            "verdict": (f"{'different' if significant else 'no difference'} (p = {p_value:.2g}): {deviation['verdict']}; "
                        f"correlation-aware {chi2['verdict']}; {'equivalent' if all(t['equivalent'] for t in bins) else 'not shown equivalent'} "
                        f"within ±{margin:g} in every bin (this run bounds every bin's |Δ| < {bound:.2g})")}


def compare_scalars(a: dict[str, Any] | None, b: dict[str, Any] | None, margin: float, dof: float | None = None) -> dict[str, Any] | None:
    """A two-sided test and an equivalence test within ``margin`` of two scalars, or None without errors."""
    if a is None or b is None or a["error"] is None or b["error"] is None:
        return None
    test = statistics.difference_significance(a["value"], a["error"], b["value"], b["error"], dof=dof)
    equivalence = statistics.equivalence_test(a["value"], a["error"], b["value"], b["error"], margin, dof=dof)
    return {**test, "equivalent": equivalence["equivalent"], "margin": margin, "bound": equivalence["bound"],
            "verdict": f"{test['verdict']}; {equivalence['verdict']}"}


def compare_variants(results: dict[str, Any], reference: str = "raw", margins: Mapping[str, float] = MARGINS) -> dict[str, Any]:
    """Each variant against ``reference`` (95 % confidence) in every observable named in ``margins`` (water's: g_OO,
    g_OH, g_HH, c_L, c_T, D when both runs reach the diffusive regime, c_uu at the last lag and the dipole orientation
    bias), each with an equivalence test within its margin: curves by :func:`compare_curves`, scalars (and an
    orientation bias's ``bias_kT``) by :func:`compare_scalars`; an observable a run lacks (None) is left out. With
    :data:`~symprobe.study.variants.REPEAT` among the variants, its comparison is the null calibration
    (``calibration``); when that fails, the other verdicts are withheld."""
    verdicts: dict[str, Any] = {}
    base = results["variants"].get(reference)
    if base is None:
        return {"verdicts": verdicts, "calibration": None}
    for variant, data in results["variants"].items():
        if variant == reference:
            continue
        dof = max(1, min(base["n_blocks"], data["n_blocks"]) - 1)  # replicas, or the two halves of one run
        row: dict[str, Any] = {}
        for name, margin in margins.items():
            a, b = base.get(name), data.get(name)
            if a is None or b is None:
                continue
            if "x" in a:
                if len(a["x"]) >= 2:
                    row[name] = compare_curves(a, b, margin)
                continue
            bias = "bias_kT" in a  # an orientation bias: errors from molecules, Gaussian
            test = compare_scalars(a["bias_kT"] if bias else a, b["bias_kT"] if bias else b, margin,
                                   dof=None if bias else dof if base.get("errors_from") == "replicas" else 1)
            if test is not None:
                row[name] = test
        verdicts[variant] = row
    calibration = _null_calibration(verdicts[REPEAT], base, results["variants"][REPEAT]) if verdicts.get(REPEAT) else None
    return {"verdicts": verdicts, "calibration": calibration,
            "withheld": calibration is not None and not calibration["passed"]}


# With R replicas per set, the block-reassignment test has C(2R, R) splits, so its smallest p-value is
# 1/(C(2R, R) + 1): 5 replicas (252 splits, p ≥ 0.004) are the fewest for which a null test can pass the
# Bonferroni level 0.05/7 of the null family; with fewer, the null comparison cannot find bad error bars.
MIN_NULL_REPLICAS = 5


def _null_calibration(tests: dict[str, Any], raw: dict[str, Any], repeat: dict[str, Any]) -> dict[str, Any]:
    """:func:`~symprobe.analysis.statistics.null_calibration` of raw against its repeat, or an inconclusive result (not
    passed) when the replicas are too few for the null comparison to detect bad error bars."""
    replicas = min(raw.get("n_replicas", 1), repeat.get("n_replicas", 1))
    if raw.get("errors_from") == "replicas" and replicas < MIN_NULL_REPLICAS:
        return {**statistics.null_calibration(tests), "passed": False, "conclusive": False,
                "verdict": (f"inconclusive: {replicas} replicas per set are too few for the null comparison to detect error "
                            f"bars that are too small (it needs {MIN_NULL_REPLICAS}), so this stage issues no verdicts")}
    return {**statistics.null_calibration(tests), "conclusive": True}
