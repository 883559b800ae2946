"""Density under NPT of each variant of a model: ASE's isotropic Martyna–Tobias–Klein barostat
(:class:`ase.md.nose_hoover_chain.IsotropicMTKNPT`) drives R replicas of the raw, averaged and random-rotation
variants and of a second raw set (the null comparison), one replica after the other. MTS is not run: ASE's
integrators take one force per step. Each finished replica's density series is saved (``directory/VARIANT/K.json``),
so an interrupted set of runs resumes at the first unfinished replica.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms, units

from symprobe.analysis import statistics
from symprobe.files import write_json
from symprobe.models.base import Model
from symprobe.structures import density_g_cm3
from symprobe.study.liquid import combine_scalars, compare_variants
from symprobe.study.variants import (
    REPEAT,
    curve,
    replica_seed,
    scalar,
    variant_potential,
)

NPT_VARIANTS = ("raw", "averaged", "random")
DENSITY_MARGIN = 0.01  # equivalence margin of the density, relative to raw's


def gives_stress(model: Model, atoms: Atoms) -> bool:
    """Whether ``model`` predicts a stress for the periodic ``atoms``."""
    return model.predict(atoms).stress is not None


def npt_replica(potential: Model, atoms: Atoms, *, temperature_K: float, pressure_bar: float, timestep_fs: float, steps: int,
                stride: int, seed: int) -> dict[str, list[float]]:
    """One isotropic MTK NPT run of ``potential`` from ``atoms`` with Maxwell–Boltzmann momenta (generator
    [seed, 1]); thermostat and barostat damping 100 and 1000 time steps. Returns the time (fs) and density (g/cm³)
    every ``stride`` steps."""
    from ase.md.nose_hoover_chain import IsotropicMTKNPT

    from symprobe.md.run import thermalized

    atoms = thermalized(atoms, temperature_K, seed)
    atoms.calc = potential.as_calculator()
    dynamics = IsotropicMTKNPT(atoms, timestep=timestep_fs * units.fs, temperature_K=temperature_K,
                               pressure_au=pressure_bar * units.bar, tdamp=100 * timestep_fs * units.fs,
                               pdamp=1000 * timestep_fs * units.fs)
    series: dict[str, list[float]] = {"time_fs": [], "density_g_cm3": []}

    def record() -> None:
        series["time_fs"].append(dynamics.nsteps * timestep_fs)
        series["density_g_cm3"].append(density_g_cm3(atoms))

    dynamics.attach(record, interval=stride)
    dynamics.run(steps)
    return series


def density_runs(model: Model, atoms: Atoms, directory: Path, *, replicas: int, temperature_K: float, pressure_bar: float,
                 timestep_fs: float, steps: int, equilibration_steps: int, stride: int, grid: str, seed: int,
                 progress: bool = True) -> dict[str, Any]:
    """NPT runs of every variant of :data:`NPT_VARIANTS` and of the null set, ``replicas`` each (replica k of a variant
    seeded as in the batched runs, :func:`~symprobe.study.variants.replica_seed`); the density of each replica is
    its mean after ``equilibration_steps``; a variant's is the mean over replicas with the standard error of their
    scatter. Returns the settings, each variant's density curve (mean over replicas) and density, and the
    comparisons with raw (:func:`~symprobe.study.liquid.compare_variants`, margin :data:`DENSITY_MARGIN` of raw's)."""
    directory = Path(directory)
    results: dict[str, Any] = {"barostat": f"ASE IsotropicMTKNPT, {pressure_bar:g} bar, {temperature_K:g} K", "steps": steps,
                               "equilibration_steps": equilibration_steps, "timestep_fs": timestep_fs, "replicas": replicas,
                               "not_run": {"mts": "ASE's integrators take one force per step, so MTS has no NPT run"},
                               "variants": {}}
    for variant in (*NPT_VARIANTS, REPEAT):
        series = []
        for k in range(replicas):
            path = directory / variant / f"{k}.json"
            if not path.exists():
                if progress:
                    print(f"[bulk] NPT {variant} replica {k + 1}/{replicas}", flush=True)
                replica = replica_seed(seed, k, variant)
                potential, _, _ = variant_potential(model, variant, grid, 1, replica)
                write_json(path, npt_replica(potential, atoms, temperature_K=temperature_K, pressure_bar=pressure_bar,
                                             timestep_fs=timestep_fs, steps=steps, stride=stride, seed=replica))
            series.append(json.loads(path.read_text()))
        results["variants"][variant] = combined_density(series, equilibration_steps * timestep_fs)
    raw = results["variants"]["raw"]["density"]["value"]
    results.update(compare_variants(results, margins={"density": DENSITY_MARGIN * raw}))
    return results


def combined_density(series: Sequence[dict[str, list[float]]], equilibrated_from_fs: float) -> dict[str, Any]:
    """One variant's density (g/cm³) from its replicas' series: each replica's mean from ``equilibrated_from_fs`` on,
    their mean and the standard error of their scatter; the change from the first to the second half of that part
    (``drift``, g/cm³) and whether the density has ``settled`` (that change within two of its standard errors); the
    mean curve over replicas for the figure."""
    per_replica = []
    for run in series:
        time, density = np.asarray(run["time_fs"]), np.asarray(run["density_g_cm3"])
        kept = density[time >= equilibrated_from_fs]
        half = len(kept) // 2
        per_replica.append({"density": scalar(kept.mean(), statistics.block_average(kept).stderr if len(kept) >= 16 else None,
                                              "g/cm³"),
                            "drift": scalar(kept[half:].mean() - kept[:half].mean() if half else 0.0, None, "g/cm³")})
    length = min(len(run["time_fs"]) for run in series)
    curves = np.array([run["density_g_cm3"][:length] for run in series])
    mean, error = statistics.blocks_mean_and_error(curves)
    combined = combine_scalars(per_replica, ("density", "drift"))
    drift = combined["drift"]
    return {"n_replicas": len(series), "n_blocks": len(series), "errors_from": "replicas",
            "density_curve": curve(series[0]["time_fs"][:length], mean, error, "fs", "g/cm³"),
            "per_replica_g_cm3": [r["density"]["value"] for r in per_replica], **combined,
            "settled": bool(abs(drift["value"]) <= 2.0 * (drift["error"] or 0.0))}
