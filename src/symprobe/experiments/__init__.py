"""The paper's experiments (Langer, Pozdnyakov & Ceriotti 2024) as protocols: gas-phase molecules
(:mod:`.gas`), liquid water (:mod:`.liquid`) and proton-disordered ice Ih (:mod:`.ice`).

Each protocol runs molecular dynamics through :func:`run_variants` (the batched engine of
:mod:`symprobe.md.batched`: all replicas of all variants in one state, one force call per step) or ASE
optimisers, and reduces trajectories with :mod:`symprobe.observables` and :mod:`symprobe.statistics`. Results are plain
JSON-ready dicts: scalars as ``{"value", "error", "unit"}``, curves as ``{"x", "y", "error"}`` with
non-finite points dropped. Variants of a model:

* ``raw`` — the model as it is;
* ``averaged`` — :class:`~symprobe.symmetrize.GridAverage` on the study grid at every step;
* ``random`` — :class:`~symprobe.symmetrize.RandomRotation` (a new Haar rotation, with inversion, per call);
* ``mts`` — multiple time stepping: raw model inside, the grid-average correction every ``n_inner`` steps
  (on ``mts_grid``, which defaults to the study grid).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.files import write_json
from symprobe.models.base import Model

VARIANTS = ("raw", "averaged", "random", "mts")


def scalar(value: float, error: float | None, unit: str) -> dict[str, Any]:
    """A scalar observable with its standard error (None when none can be given)."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"observable value is not finite ({value} {unit})")
    return {"value": value, "error": None if error is None or not np.isfinite(error) else float(error), "unit": unit}


def curve(x: np.ndarray, y: np.ndarray, error: np.ndarray | None = None, x_unit: str = "", y_unit: str = "") -> dict[str, Any]:
    """A curve with per-point standard errors; points where x, y or the error are not finite are dropped
    (an error that is not finite anywhere means none was estimated and becomes 0)."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    e = np.zeros_like(y) if error is None else np.asarray(error, dtype=np.float64).ravel()
    if not np.isfinite(e).any():  # no error estimate at all (e.g. a single segment): 0, not dropped points
        e = np.zeros_like(y)
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(e)
    return {"x": x[keep].tolist(), "y": y[keep].tolist(), "error": e[keep].tolist(), "x_unit": x_unit, "y_unit": y_unit}


def variant_potential(model: Model, variant: str, grid: str, n_inner: int, seed: int,
                      mts_grid: str | None = None) -> tuple[Model, Model | None, int]:
    """(potential, MTS correction or None, inner steps per outer step) of a variant of ``model``."""
    from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation

    if variant == "raw":
        return model, None, 1
    if variant == "averaged":
        return GridAverage(model, so3.get(grid)), None, 1
    if variant == "random":
        return RandomRotation(model, seed, improper=True), None, 1
    if variant == "mts":
        return model, AveragingCorrection(model, so3.get(mts_grid or grid)), int(n_inner)
    raise ValueError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")


def replica_seed(seed: int, k: int) -> int:
    """The generator seed of replica ``k`` of every variant in a run seeded ``seed``: the variants share their
    starting momenta and thermostat noise (common random numbers), so that what differs between them is
    the potential (their error bars, each from its own run, are then conservative for the difference)."""
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def run_variants(
    model: Model,
    starts: Mapping[str, Sequence[Atoms]],
    directory: Path,
    *,
    grid: str,
    n_inner: int,
    ensemble: Mapping[str, Any],
    steps: int,
    timestep_fs: float,
    seed: int,
    trajectory_stride: int,
    mts_grid: str | None = None,
    initial_temperature_K: float | None = None,
    progress: bool = True,
) -> dict[str, Path]:
    """Run every variant's replicas (``starts[variant]``: structures with their momenta) together in one
    batched state; variant v writes ``directory/v`` (one log, joined frames). Return the directories.

    A finished run leaves ``complete.json`` and is not rerun; an interrupted one resumes from its checkpoint.
    ``steps`` and the log and checkpoint strides are rounded up to multiples of ``n_inner`` when MTS runs;
    ``initial_temperature_K`` draws fresh momenta for each replica.
    """
    from symprobe.md.batched import Replica
    from symprobe.md.run import Group, Strides, run_batched, thermalized

    directory = Path(directory)
    unit = int(n_inner) if "mts" in starts else 1
    round_up = lambda n: int(unit * max(1, -(-int(n) // unit)))  # noqa: E731
    steps = round_up(steps)
    marker = directory / "complete.json"
    done = {"steps": steps, "variants": sorted(starts)}
    groups = {variant: directory / variant for variant in starts}
    if marker.exists() and json.loads(marker.read_text()) == done:
        return groups
    replicas, members = [], {}
    for variant, structures in starts.items():
        members[variant] = []
        for k, atoms in enumerate(structures):
            replica_seed_ = replica_seed(seed, k)
            potential, slow, inner = variant_potential(model, variant, grid, n_inner, replica_seed_, mts_grid)
            start = thermalized(atoms, initial_temperature_K, replica_seed_)
            members[variant].append(len(replicas))
            replicas.append(Replica(start, potential, slow, inner, ensemble, replica_seed_, f"{variant} #{k}"))
    strides = Strides(log=unit, trajectory=int(trajectory_stride), checkpoint=round_up(max(trajectory_stride, steps // 10)))
    checkpoint = directory / "checkpoint.npz"
    run_batched(replicas, [Group(members[v], groups[v]) for v in starts], timestep_fs, steps, checkpoint,
                resume=checkpoint.exists(), strides=strides, progress=progress)
    write_json(marker, done)
    return groups


def read_trajectory(directory: Path) -> list[Atoms]:
    """The frames of an MD run's ``trajectory.extxyz``."""
    from ase.io import read

    return read(Path(directory) / "trajectory.extxyz", index=":")


