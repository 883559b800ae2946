"""Liquid water at 300 K: the interpolative case of the paper.

:func:`starting_box` gives the initial configuration (the paper's 512-molecule box from the shared data,
or a generated 64-molecule box pre-equilibrated with q-TIP4P/F); :func:`liquid_runs` runs NVT (Bussi
stochastic velocity rescaling, τ = 10 fs, 0.5 fs) for each variant and reduces every trajectory with
:func:`liquid_observables`; :func:`compare_variants` gives the verdicts raw vs each other variant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np
from ase import Atoms

from symprobe import observables, statistics
from symprobe.experiments import curve, read_trajectory, run_variants, scalar
from symprobe.models.base import Model
from symprobe.structures import read_structures, shared_data_dir, water_box

ENSEMBLE = {"kind": "nvt-bussi", "temperature_K": 300.0, "tau_fs": 10.0}


def starting_box(directory: Path, n_per_side: int, use_shared_512: bool, pre_steps: int, seed: int, progress: bool = True) -> tuple[Atoms, str]:
    """(structure, description): the shared 512-molecule box when ``use_shared_512`` and present, else
    ``water_box(n_per_side)`` pre-equilibrated by ``pre_steps`` NVT steps of q-TIP4P/F (a cheap,
    physically sensible water model; the studied model then equilibrates it further)."""
    from symprobe.models.qtip4pf import qtip4pf

    data = shared_data_dir()
    if use_shared_512 and data is not None and (data / "structures" / "water_liquid_512_init.extxyz").exists():
        atoms = read_structures(data / "structures" / "water_liquid_512_init.extxyz")[-1]
        return atoms, "the paper's 512-molecule box (shared data, water_liquid_512_init.extxyz)"
    box = water_box(n_per_side, seed=seed)
    runs = run_variants(qtip4pf(), {"raw": [box]}, Path(directory), grid="0", n_inner=1, ensemble=ENSEMBLE, steps=pre_steps,
                        timestep_fs=0.5, seed=seed, trajectory_stride=pre_steps, initial_temperature_K=300.0, progress=progress)
    atoms = read_trajectory(runs["raw"])[-1]
    atoms.calc = None
    atoms.set_momenta(None)
    atoms.info = {"name": f"water box {len(atoms) // 3} H2O"}
    return atoms, f"{len(atoms) // 3} H2O on a lattice (symprobe.structures.water_box), {pre_steps} steps of q-TIP4P/F NVT"


def liquid_observables(frames: Sequence[Atoms], log: dict[str, np.ndarray], frame_dt_fs: float, n_blocks: int) -> dict[str, Any]:
    """Every liquid observable of one trajectory, with errors from ``n_blocks`` contiguous blocks."""
    n_blocks = max(2, min(n_blocks, len(frames) // 2))
    half_width = 0.5 * min(frames[0].cell.lengths())
    r_max = float(min(6.0, np.floor(half_width * 10) / 10))
    out: dict[str, Any] = {"n_frames": len(frames), "n_blocks": n_blocks, "frame_dt_fs": frame_dt_fs}
    rdfs = observables.radial_distributions(frames, r_max=r_max, bin_width=0.05)
    for (a, b), rdf in rdfs.items():
        mean, error = statistics.curve_mean_and_error(rdf.g_frames, n_blocks)
        out[f"g_{a}{b}"] = curve(rdf.r, mean, error, "Å", "g(r)")
    # molecules and dipoles
    triples = observables.persistent_molecules(frames)
    positions, cells = observables.trajectory_arrays(frames)
    u = observables.dipole_directions(positions, triples, cells)
    omap = observables.orientational_free_energy(u.reshape(-1, 3), bandwidth=0.1 if len(u) * len(triples) > 50000 else 0.3,
                                                 n_cos=25, n_phi=49)
    from symprobe.experiments.gas import harmonic_orientation_bias

    out["n_molecules"] = int(len(triples))
    out["dipole_map_max_deviation"] = scalar(min(omap.max_deviation, 10.0), None, "kT")
    out["dipole_map_noise"] = scalar(omap.noise, None, "kT (independent samples)")
    out["dipole_bias"] = harmonic_orientation_bias(u)
    correlations = observables.dipole_correlations(frames, r_max=r_max, bin_width=0.2)
    for name, sums in (("c_L", correlations.longitudinal_sums), ("c_T", correlations.transverse_sums)):
        mean, error = statistics.curve_mean_and_error(sums, n_blocks, counts=correlations.pair_counts)
        out[name] = curve(correlations.r, mean, error, "Å", "dimensionless")
    # dynamics
    duration = frame_dt_fs * (len(frames) - 1)
    segments = 2 if len(frames) >= 20 else 1
    oxygen = observables.unwrap_positions(positions[:, triples[:, 0]], cells[0])
    fit_end = max(2 * frame_dt_fs, 0.4 * duration / segments)
    diffusion = observables.diffusion_coefficient(oxygen, frame_dt_fs, 0.25 * fit_end, fit_end, n_segments=segments)
    out["msd_O"] = curve(diffusion.msd.lags, diffusion.msd.mean, diffusion.msd.error, "fs", "Å²")
    out["diffusion"] = scalar(diffusion.cm2_per_s.mean * 1e5, diffusion.cm2_per_s.error * 1e5 if segments > 1 else None, "1e-5 cm²/s")
    max_lag = int(fit_end / frame_dt_fs)
    cuu = observables.orientational_autocorrelation(u, frame_dt_fs, max_lag, n_segments=segments)
    out["c_uu"] = curve(cuu.lags, cuu.mean, cuu.error, "fs", "dimensionless")
    out["c_uu_last"] = scalar(float(cuu.mean[-1]), float(cuu.error[-1]) if segments > 1 else None, "dimensionless")
    out["c_uu_last_lag_fs"] = float(cuu.lags[-1])
    drift = observables.conserved_drift(log["time_fs"], log["conserved_eV"], len(triples))
    out["drift_per_500ps"] = scalar(drift.per_500ps.mean, drift.per_500ps.error, "meV per H2O per 500 ps")
    out["conserved"] = curve(log["time_fs"], (log["conserved_eV"] - log["conserved_eV"][0]) * 1000.0 / len(triples), None,
                             "fs", "meV per H2O")
    out["temperature"] = scalar(*statistics.block_average(log["temperature_K"])[:2], "K")
    return out


def liquid_runs(
    model: Model, start: Atoms, directory: Path, variants: Sequence[str], *, steps: int, equilibration_steps: int,
    grid: str, n_inner: int, seed: int, trajectory_stride: int, n_blocks: int, mts_grid: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """NVT runs of all variants from ``start`` (velocities at 300 K), stepped together; the first
    ``equilibration_steps`` are discarded from the analysis. Returns per-variant observables and the wall time."""
    import time

    from symprobe.md import read_log

    results: dict[str, Any] = {"n_molecules": len(start) // 3, "steps": steps, "equilibration_steps": equilibration_steps,
                               "timestep_fs": 0.5, "thermostat": "Bussi SVR, 300 K, tau 10 fs", "variants": {}}
    begin = time.perf_counter()
    runs = run_variants(model, {v: [start] for v in variants}, Path(directory), grid=grid, n_inner=n_inner, mts_grid=mts_grid,
                        ensemble=ENSEMBLE, steps=steps, timestep_fs=0.5, seed=seed, trajectory_stride=trajectory_stride,
                        initial_temperature_K=300.0, progress=progress)
    results["wall_s"] = time.perf_counter() - begin
    for variant in variants:
        frames = read_trajectory(runs[variant])
        times = np.array([float(f.info["time_fs"]) for f in frames])
        kept = [f for f, t in zip(frames, times) if t >= equilibration_steps * 0.5]
        log = read_log(runs[variant])
        mask = log["time_fs"] >= equilibration_steps * 0.5
        log = {key: value[mask] for key, value in log.items()}
        frame_dt = float(np.median(np.diff(times))) if len(times) > 1 else 0.5 * trajectory_stride
        results["variants"][variant] = liquid_observables(kept, log, frame_dt, n_blocks)
    return results


def compare_variants(results: dict[str, Any], reference: str = "raw") -> dict[str, Any]:
    """Verdicts (95 % confidence) on each variant against ``reference`` for g_OO, g_OH, g_HH, c_L, c_T,
    the diffusion coefficient, c_uu at the last lag and the dipole orientation bias."""
    verdicts: dict[str, Any] = {}
    base = results["variants"].get(reference)
    if base is None:
        return verdicts
    for variant, data in results["variants"].items():
        if variant == reference:
            continue
        row: dict[str, Any] = {}
        dof = max(1, min(base["n_blocks"], data["n_blocks"]) - 1)
        for name in ("g_OO", "g_OH", "g_HH", "c_L", "c_T"):
            a, b = base[name], data[name]
            xs = sorted(set(np.round(a["x"], 6)) & set(np.round(b["x"], 6)))
            if len(xs) < 2:
                continue
            pick = lambda c: np.array([[y, e] for x, y, e in zip(np.round(c["x"], 6), c["y"], c["error"]) if x in set(xs)])  # noqa: E731
            pa, pb = pick(a), pick(b)
            row[name] = statistics.curve_difference_significance(pa[:, 0], pa[:, 1], pb[:, 0], pb[:, 1], dof=dof)
        for name in ("diffusion", "c_uu_last"):
            a, b = base[name], data[name]
            if a["error"] is not None and b["error"] is not None:
                row[name] = statistics.difference_significance(a["value"], a["error"], b["value"], b["error"], dof=1)
        a, b = base["dipole_bias"]["bias_kT"], data["dipole_bias"]["bias_kT"]
        row["dipole_bias"] = statistics.difference_significance(a["value"], a["error"], b["value"], b["error"])
        verdicts[variant] = row
    return verdicts
