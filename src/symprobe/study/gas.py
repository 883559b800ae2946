"""Gas-phase molecules: the extrapolative case of the paper (an isolated molecule), water by default, any molecule
given as a ``template`` (:mod:`symprobe.study.molecule`).

Every molecule is a replica of its own (non-periodic, centre of mass at the origin, a random orientation),
and the replicas of all variants are stepped together by the batched engine: ``n`` independent samples
per variant from one run (errors are standard errors over molecules). Trajectories join each variant's
molecules into one frame. Protocols:

* :func:`angular_momentum_runs` — NVE from 300 K velocities (each molecule's centre-of-mass motion
  removed), 0.5 fs: per-molecule angular momentum L(t) (eV·fs) and its change |L(t) − L(0)|;
* :func:`torque_convergence` — RMS net torque (eV) of grid-averaged models vs number of evaluations;
* :func:`orientation_energy_convergence` — the orientation-energy profile of the bisector (kT) of
  grid-averaged models vs number of evaluations: the noise-free counterpart of the NVT orientation map;
* :func:`potential_spectra` — power spectra of V and ΔV = V_raw − V_averaged along the raw trajectory;
* :func:`orientation_runs` — Langevin NVT at 300 K, and the orientational free energy F(cos θ, φ)/kT of the
  H–O–H bisector in the lab frame.

With :data:`~symprobe.study.variants.REPEAT` among the variants, the raw model runs a second time on its own
molecules and seeds; the two raw sets are compared like variants (``null``, ``calibration``), which tells
whether the error bars are calibrated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

from symprobe import so3
from symprobe.analysis import observables, statistics
from symprobe.models.base import Model
from symprobe.structures import water_monomer
from symprobe.study.variants import (
    REPEAT,
    GroupRunner,
    curve,
    read_trajectory,
    run_groups,
    scalar,
)

KT_300K = units.kB * 300.0  # eV
NVE = {"kind": "nve"}
NVT = {"kind": "nvt-langevin", "temperature_K": 300.0, "tau_fs": 100.0}  # the paper's gas-phase thermostat


def isolated_molecules(n: int, seed: int = 0, template: Atoms | None = None) -> list[Atoms]:
    """``n`` copies of ``template`` (default H2O, ordered O, H, H), each with its centre of mass at the origin in a
    random orientation; not periodic (one replica each)."""
    if n < 1:
        raise ValueError(f"isolated_molecules: need n ≥ 1, got {n}")
    monomer = water_monomer(0.0) if template is None else template
    local = monomer.get_positions() - monomer.get_center_of_mass()
    formula = monomer.get_chemical_formula(mode="hill")
    molecules = []
    for k, R in enumerate(so3.haar_rotations(n, np.random.default_rng(seed))):
        atoms = Atoms(monomer.numbers, positions=local @ R.T, masses=monomer.get_masses(), pbc=False)
        atoms.info["name"] = f"{formula} #{k}"
        molecules.append(atoms)
    return molecules


def with_molecular_momenta(molecules: Sequence[Atoms], temperature_K: float, seed: int) -> list[Atoms]:
    """Copies of ``molecules`` with Maxwell–Boltzmann momenta at ``temperature_K``, each molecule's
    centre-of-mass momentum removed and the total kinetic energy rescaled to 3N − 3 degrees of freedom per molecule of
    N atoms (all molecules alike)."""
    rng = np.random.default_rng([seed, 7])
    masses = np.concatenate([m.get_masses() for m in molecules])
    size = len(molecules[0])
    momenta = rng.normal(size=(len(masses), 3)) * np.sqrt(masses * units.kB * temperature_K)[:, None]
    by_molecule = momenta.reshape(-1, size, 3)
    m = masses.reshape(-1, size)
    com_velocity = by_molecule.sum(axis=1) / m.sum(axis=1)[:, None]
    by_molecule -= m[:, :, None] * com_velocity[:, None, :]
    kinetic = 0.5 * np.sum(by_molecule.reshape(-1, 3) ** 2 / masses[:, None])
    by_molecule *= np.sqrt(0.5 * (3 * size - 3) * len(molecules) * units.kB * temperature_K / kinetic)
    out = []
    for molecule, p in zip(molecules, by_molecule):
        molecule = molecule.copy()
        molecule.set_momenta(p)
        out.append(molecule)
    return out


def nve_starts(variants: Sequence[str], n_molecules: int, seed: int, template: Atoms | None = None) -> dict[str, list[Atoms]]:
    """The NVE runs' molecules (copies of ``template``, default H2O) with 300 K momenta: one set shared by the variants
    (common random numbers), its own for :data:`~symprobe.study.variants.REPEAT`."""
    return {v: with_molecular_momenta(isolated_molecules(n_molecules, seed + (v == REPEAT), template), 300.0, seed + (v == REPEAT))
            for v in variants}


def nvt_starts(variants: Sequence[str], n_molecules: int, seed: int, n_averaged_molecules: int | None = None,
               template: Atoms | None = None) -> dict[str, list[Atoms]]:
    """The NVT runs' molecules: as :func:`nve_starts` (other seeds); the averaged variant (36 copies per step) may
    take only the first ``n_averaged_molecules``."""
    count = {v: n_molecules if v != "averaged" or n_averaged_molecules is None else min(n_molecules, n_averaged_molecules)
             for v in variants}
    return {v: with_molecular_momenta(isolated_molecules(count[v], seed + 100 + 100 * (v == REPEAT), template), 300.0,
                                      seed + 100 + 100 * (v == REPEAT)) for v in variants}


def _molecule_angular_momenta(frames: Sequence[Atoms], size: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Times (fs) and per-molecule angular momenta about their centres (n_frames, n_molecules, 3) eV·fs of frames
    that join molecules of ``size`` atoms each."""
    times = np.array([float(f.info.get("time_fs", 0.0)) for f in frames])
    positions = np.stack([f.get_positions() for f in frames])
    velocities = np.stack([f.get_velocities() for f in frames]) * units.fs  # Å/fs
    masses = frames[0].get_masses()[:size]
    n = len(frames[0]) // size
    L = np.stack(
        [observables.angular_momentum(positions[:, size * i : size * (i + 1)], velocities[:, size * i : size * (i + 1)], masses)
         for i in range(n)],
        axis=1,
    )
    return times, L * observables.EV_FS_PER_AMU_A2_PER_FS


def angular_momentum_runs(
    model: Model, directory: Path, variants: Sequence[str], *, n_molecules: int, steps: int, grid: str, n_inner: int,
    seed: int, trajectory_stride: int, mts_grid: str | None = None, progress: bool = True, runner: GroupRunner | None = None,
    template: Atoms | None = None,
) -> dict[str, Any]:
    """NVE of ``n_molecules`` isolated molecules (copies of ``template``, default H2O) per variant (0.5 fs, 300 K start),
    all variants stepped together or each variant's molecules a task of ``runner``; see module docstring."""
    from symprobe.md import read_log

    settings = {"grid": grid, "n_inner": n_inner, "mts_grid": mts_grid, "ensemble": NVE, "steps": steps, "timestep_fs": 0.5,
                "seed": seed, "trajectory_stride": trajectory_stride}
    runs = run_groups(model, nve_starts(variants, n_molecules, seed, template), directory, settings, runner, progress)
    results: dict[str, Any] = {"n_molecules": n_molecules, "timestep_fs": 0.5, "steps": steps, "variants": {}}
    for variant in variants:
        times, L = _molecule_angular_momenta(read_trajectory(runs[variant]), 3 if template is None else len(template))
        change = np.linalg.norm(L - L[:1], axis=-1)  # (frames, molecules)
        final = statistics.mean_and_error(change[-1])
        log = read_log(runs[variant])
        drift = observables.conserved_drift(log["time_fs"], log["conserved_eV"], n_molecules)
        results["variants"][variant] = {
            "L_components_molecule0": {axis: curve(times, L[:, 0, k], None, "fs", "eV·fs") for k, axis in enumerate("xyz")},
            "L_magnitude_molecule0": curve(times, np.linalg.norm(L[:, 0], axis=-1), None, "fs", "eV·fs"),
            "L_change": curve(times, change.mean(axis=1), change.std(axis=1, ddof=1) / np.sqrt(n_molecules), "fs", "eV·fs"),
            "L_change_final": scalar(final.mean, final.error, "eV·fs"),
            "L_magnitude_mean": scalar(float(np.linalg.norm(L, axis=-1).mean()), None, "eV·fs"),
            "energy_drift_per_molecule": scalar(drift.mev_per_molecule_per_ps.mean, drift.mev_per_molecule_per_ps.error,
                                                "meV/ps per molecule"),
            "duration_ps": float(times[-1] / 1000.0),
        }
    if REPEAT in variants and "raw" in variants:
        raw, repeat = results["variants"]["raw"], results["variants"][REPEAT]
        results["null"] = {name: statistics.difference_significance(raw[name]["value"], raw[name]["error"] or 0.0,
                                                                    repeat[name]["value"], repeat[name]["error"] or 0.0,
                                                                    dof=n_molecules - 1)
                           for name in ("L_change_final", "energy_drift_per_molecule")}
        results["calibration"] = statistics.null_calibration(results["null"])
    return results


def molecules_of(frames: Sequence[Atoms], count: int, seed: int = 0) -> list[Atoms]:
    """``count`` single molecules taken from trajectory frames (molecule k of frame k·len/count), centred on
    their centre of mass and turned by a random rotation; not periodic."""
    rotations = so3.haar_rotations(count, np.random.default_rng([seed, 11]))
    out = []
    for k in range(count):
        frame = frames[(k * max(1, len(frames) // count)) % len(frames)]
        m = k % (len(frame) // 3)
        molecule = Atoms(frame.numbers[3 * m : 3 * m + 3], positions=frame.get_positions()[3 * m : 3 * m + 3], pbc=False)
        molecule.set_positions((molecule.get_positions() - molecule.get_center_of_mass()) @ rotations[k].T)
        out.append(molecule)
    return out


def torque_convergence(model: Model, frames: Sequence[Atoms], grids: Sequence[so3.Quadrature], n_samples: int, seed: int = 0) -> dict[str, Any]:
    """RMS net torque (eV) about the centre of mass of each grid's average, over ``n_samples`` molecule
    snapshots of the given frames (:func:`molecules_of`). One batched call for all snapshots and grids."""
    snapshots = molecules_of(frames, n_samples, seed)
    sizes = np.cumsum([0] + [len(q) for q in grids])
    all_rotations = np.concatenate([q.rotations for q in grids])
    torques = np.zeros((len(grids), len(snapshots), 3))
    for s, (molecule, batch) in enumerate(zip(snapshots, model.predict_many(snapshots, [all_rotations] * len(snapshots)))):
        for g, (q, a, b) in enumerate(zip(grids, sizes[:-1], sizes[1:])):
            forces = np.einsum("k,kai->ai", q.weights, batch.forces[a:b])
            torques[g, s] = observables.net_torque(molecule.get_positions(), forces, molecule.get_masses())
    rows = []
    for g, q in enumerate(grids):
        squares = np.sum(torques[g] ** 2, axis=1)
        mean = statistics.mean_and_error(squares)
        rms = float(np.sqrt(mean.mean))
        rows.append({"grid": q.name, "evaluations": len(q), "degree": q.degree,
                     "rms_torque": scalar(rms, 0.5 * mean.error / max(rms, 1e-300), "eV")})
    return {"n_samples": len(snapshots), "rows": rows}


def body_frame(molecule: Atoms) -> np.ndarray:
    """Positions (3, 3) Å of an (O, H, H) molecule about its centre of mass, turned so that the H–O–H
    bisector points along +z and the molecule lies in the xz plane."""
    positions = molecule.get_positions() - molecule.get_center_of_mass()
    z = observables.dipole_directions(positions, np.array([[0, 1, 2]]))[0]
    y = np.cross(positions[1] - positions[0], positions[2] - positions[0])
    y = y / np.linalg.norm(y)
    return positions @ np.stack([np.cross(y, z), y, z]).T


def orientation_energy_convergence(model: Model, frames: Sequence[Atoms], grids: Sequence[so3.Quadrature], n_snapshots: int,
                                   directions: so3.Quadrature | None = None) -> dict[str, Any]:
    """The static orientation-energy profile of each grid's average (kT at 300 K), for ``n_snapshots``
    molecule snapshots of ``frames`` (molecule k of frame k·len/n).

    Each snapshot is turned so that its H–O–H bisector points along the directions u of ``directions``
    (default: Lebedev precision 9, 38 directions × 3 in-plane angles γ), and V_g(u) = ⟨Σ_k w_k V(R_k R_u,γ x)⟩
    over γ. Its deviation from the sphere mean, ΔV_g(u)/kT, is to first order the orientational free energy
    F(u)/kT that the NVT runs sample with noise; reported per grid: the largest |ΔV_g| (``max_kT``) and the
    largest of its ℓ = 1, 2 part (``bias_kT``, the quantity of the NVT maps), each as mean and standard
    error over snapshots. One batched call per snapshot.
    """
    directions = directions or so3.lebedev(9, 3)
    points = directions.rotations[:, :, 2]  # R_u,γ ẑ = u
    unique, index = np.unique(np.round(points, 12), axis=0, return_inverse=True)
    index = index.reshape(-1)
    counts = np.bincount(index, weights=directions.weights)  # sphere weight of each direction, sums to 1
    low_order = np.concatenate([so3.real_sph_harm(l, unique) for l in (1, 2)], axis=-1)  # (P, 8)
    on_sphere = np.concatenate([so3.real_sph_harm(l, _sphere_points(800)) for l in (1, 2)], axis=-1)
    sizes = np.cumsum([0] + [len(q) for q in grids])
    all_rotations = np.einsum("kij,njl->knil", np.concatenate([q.rotations for q in grids]), directions.rotations).reshape(-1, 3, 3)
    per_snapshot = np.zeros((len(grids), n_snapshots, 2))
    snapshots = []
    for s in range(n_snapshots):
        frame = frames[(s * max(1, len(frames) // n_snapshots)) % len(frames)]
        m = s % (len(frame) // 3)
        snapshots.append(Atoms(frame.numbers[3 * m : 3 * m + 3], positions=body_frame(frame[3 * m : 3 * m + 3]), pbc=False))
    batches = model.predict_many(snapshots, [all_rotations] * n_snapshots)
    for s, batch in enumerate(batches):
        energies = batch.energies.reshape(-1, len(directions))
        for g, (q, a, b) in enumerate(zip(grids, sizes[:-1], sizes[1:])):
            averaged = q.weights @ energies[a:b]  # (n_orientations,) eV
            profile = np.bincount(index, weights=directions.weights * averaged) / counts  # per direction, over γ
            profile = (profile - counts @ profile) / KT_300K
            coefficients = 4 * np.pi * (counts * profile) @ low_order
            per_snapshot[g, s] = np.max(np.abs(profile)), np.max(np.abs(on_sphere @ coefficients))
    rows = []
    for g, q in enumerate(grids):
        largest, bias = (statistics.mean_and_error(per_snapshot[g, :, c]) for c in (0, 1))
        rows.append({"grid": q.name, "evaluations": len(q), "degree": q.degree,
                     "max_kT": scalar(largest.mean, largest.error, "kT"), "bias_kT": scalar(bias.mean, bias.error, "kT")})
    return {"n_snapshots": n_snapshots, "directions": directions.name, "temperature_K": 300.0, "rows": rows}


def potential_spectra(model: Model, averaged: Model, frames: Sequence[Atoms], timestep_fs: float, max_wavenumber: float = 5000.0) -> dict[str, Any]:
    """Power spectra (eV²·fs) of V and ΔV = V_raw − V_averaged of molecule 0 along a trajectory whose
    frames are ``timestep_fs`` apart; the ratio of integrated powers below 4000 cm⁻¹ and ΔV's share there."""
    molecules = [Atoms(frame.numbers[:3], positions=frame.get_positions()[:3], pbc=False) for frame in frames]
    v_raw = np.array([batch.energies[0] for batch in model.predict_many(molecules)])
    v_avg = np.array([batch.energies[0] for batch in averaged.predict_many(molecules)])
    delta = v_raw - v_avg
    spectrum_v = observables.power_spectrum(v_raw, timestep_fs)
    spectrum_dv = observables.power_spectrum(delta, timestep_fs)
    band = spectrum_v.wavenumber <= 4000.0
    keep = spectrum_v.wavenumber <= max_wavenumber
    step = max(1, int(keep.sum() // 400))
    total_dv = float(np.sum(np.abs(spectrum_dv.intensity)))
    share = float(np.sum(np.abs(spectrum_dv.intensity[band])) / total_dv) if total_dv > 0 else 1.0
    ratio = float(np.sum(np.abs(spectrum_dv.intensity[band])) / max(np.sum(np.abs(spectrum_v.intensity[band])), 1e-300))
    return {
        "spectrum_V": curve(spectrum_v.wavenumber[keep][::step], np.abs(spectrum_v.intensity[keep][::step]), None, "cm⁻¹", "eV²·fs"),
        "spectrum_dV": curve(spectrum_dv.wavenumber[keep][::step], np.abs(spectrum_dv.intensity[keep][::step]), None, "cm⁻¹", "eV²·fs"),
        "dV_rms": scalar(float(np.sqrt(np.mean((delta - delta.mean()) ** 2))), None, "eV"),
        "dV_mean": scalar(float(delta.mean()), float(delta.std(ddof=1) / np.sqrt(len(delta))) if len(delta) > 1 else None, "eV"),
        "power_ratio_below_4000": scalar(ratio, None, "dimensionless"),
        "orders_of_magnitude_below_V": scalar(float(-np.log10(max(ratio, 1e-300))), None, "decades"),
        "dV_share_below_4000": scalar(share, None, "fraction"),
        "n_frames": len(frames),
    }


def orientation_coefficients(directions: np.ndarray, lmax: int = 2) -> np.ndarray:
    """Per-molecule time averages ⟨Y_ℓm(u)⟩ (n_molecules, Σ(2ℓ + 1)) for 1 ≤ ℓ ≤ ``lmax`` of unit vectors
    (n_frames, n_molecules, 3)."""
    u = np.asarray(directions, dtype=np.float64)
    return np.concatenate([so3.real_sph_harm(l, u).mean(axis=0) for l in range(1, lmax + 1)], axis=-1)


def harmonic_orientation_bias(directions: np.ndarray, lmax: int = 2, n_boot: int = 200, seed: int = 0) -> dict[str, Any]:
    """Low-order orientation bias of unit vectors (n_frames, n_molecules, 3), molecules independent.

    c_ℓm = ⟨Y_ℓm(u)⟩ for 1 ≤ ℓ ≤ ``lmax`` (per-molecule time averages; error over molecules). To first
    order the density (1/4π)(1 + 4π Σ c_ℓm Y_ℓm) gives F/kT ≈ −4π Σ c_ℓm Y_ℓm(u); its largest |F| on the
    sphere is the bias (bootstrap error over molecules). Hotelling's T² of the per-molecule coefficients
    against zero gives the significance (:func:`~symprobe.analysis.statistics.mean_vector_significance`).
    """
    per_molecule = orientation_coefficients(directions, lmax)
    c = per_molecule.mean(axis=0)
    error = per_molecule.std(axis=0, ddof=1) / np.sqrt(len(per_molecule))
    basis = np.concatenate([so3.real_sph_harm(l, _sphere_points(800)) for l in range(1, lmax + 1)], axis=-1)

    def bias(coefficients: np.ndarray) -> float:
        return float(np.max(np.abs(4 * np.pi * basis @ coefficients)))

    rng = np.random.default_rng(seed)
    boots = [bias(per_molecule[rng.integers(len(per_molecule), size=len(per_molecule))].mean(axis=0)) for _ in range(n_boot)]
    test = statistics.mean_vector_significance(per_molecule)
    return {
        "bias_kT": scalar(bias(c), float(np.std(boots, ddof=1)), "kT"),
        "coefficients": c.tolist(),
        "coefficient_errors": error.tolist(),
        "test": test["method"],
        "t2": test["t2"],
        "dof": test["dof"],
        "p_value": test["p_value"],
        "significant": test["significant"],
    }


def _sphere_points(n: int) -> np.ndarray:
    """``n`` nearly uniform unit vectors (Fibonacci sphere), (n, 3)."""
    k = np.arange(n) + 0.5
    z = 1 - 2 * k / n
    phi = np.pi * (1 + 5**0.5) * k
    r = np.sqrt(1 - z**2)
    return np.stack([r * np.cos(phi), r * np.sin(phi), z], axis=1)


def water_bisectors(positions: np.ndarray) -> np.ndarray:
    """Unit H–O–H bisectors (frames, molecules, 3) of frames of (O, H, H) molecules, positions (frames, atoms, 3) Å."""
    return observables.dipole_directions(positions, np.arange(positions.shape[1]).reshape(-1, 3))


def orientation_runs(
    model: Model, directory: Path, variants: Sequence[str], *, n_molecules: int, steps: int, grid: str, seed: int,
    trajectory_stride: int, bandwidth: float, n_inner: int = 10, mts_grid: str | None = None,
    equilibration_fraction: float = 0.2, n_averaged_molecules: int | None = None, progress: bool = True,
    runner: GroupRunner | None = None, template: Atoms | None = None,
    direction_of: Callable[[np.ndarray], np.ndarray] | None = None,
) -> dict[str, Any]:
    """Langevin NVT (300 K, τ = 100 fs, 0.5 fs) of isolated molecules (copies of ``template``, default H2O) per
    variant; orientation maps F(cos θ, φ)/kT of a body-fixed direction and their low-order bias (see
    :func:`harmonic_orientation_bias`). ``direction_of`` maps positions (frames, atoms, 3) Å to unit vectors (frames,
    molecules, 3); default: the H–O–H bisector of each (O, H, H). The MTS variant acts with the Langevin thermostat at
    the outer level (see :mod:`symprobe.md.batched`). The averaged variant, 36 copies per step, may run on only the
    first ``n_averaged_molecules``. Each variant's molecules may be a task of ``runner``. A finished run is read again,
    not rerun, so several directions of one run cost one run."""
    starts = nvt_starts(variants, n_molecules, seed, n_averaged_molecules, template)
    count = {v: len(molecules) for v, molecules in starts.items()}
    settings = {"grid": grid, "n_inner": n_inner, "mts_grid": mts_grid, "ensemble": NVT, "steps": steps, "timestep_fs": 0.5,
                "seed": seed, "trajectory_stride": trajectory_stride}
    runs = run_groups(model, starts, directory, settings, runner, progress)
    results: dict[str, Any] = {"n_molecules": n_molecules, "molecules_per_variant": count, "steps": steps, "bandwidth_rad": bandwidth,
                               "thermostat": "Langevin (BAOAB), 300 K, tau 100 fs", "variants": {}}
    directions: dict[str, np.ndarray] = {}
    for variant in variants:
        frames = read_trajectory(runs[variant])
        frames = frames[int(len(frames) * equilibration_fraction):]
        positions = np.stack([f.get_positions() for f in frames])
        u = (direction_of or water_bisectors)(positions)  # (frames, molecules, 3)
        omap = observables.orientational_free_energy(u.reshape(-1, 3), bandwidth=bandwidth, n_cos=25, n_phi=49)
        results["variants"][variant] = {
            "map": {"cos_theta": omap.cos_theta.tolist(), "phi": omap.phi.tolist(),
                    "free_energy_kT": np.nan_to_num(omap.free_energy, posinf=10.0).tolist()},
            "map_max_deviation": scalar(omap.max_deviation if np.isfinite(omap.max_deviation) else 10.0, None, "kT"),
            "map_noise": scalar(omap.noise, None, "kT (independent samples)"),
            "harmonic": harmonic_orientation_bias(u, seed=seed),
            "n_samples": int(u.shape[0] * u.shape[1]),
            "engine": "batched",
        }
        directions[variant] = u
    if REPEAT in variants and "raw" in variants:
        test = statistics.mean_vector_difference(orientation_coefficients(directions["raw"]), orientation_coefficients(directions[REPEAT]))
        results["null"] = {"orientation coefficients (ℓ ≤ 2)": test}
        results["calibration"] = statistics.null_calibration(results["null"])
        results["raw_pooled"] = harmonic_orientation_bias(np.concatenate([directions["raw"], directions[REPEAT]], axis=1), seed=seed)
        results["raw_pooled"]["n_molecules"] = int(count["raw"] + count[REPEAT])
    return results
