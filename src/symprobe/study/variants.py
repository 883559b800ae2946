"""The variants of a model that the study compares, and their batched MD runs, shared by the experiments:
gas-phase molecules (:mod:`.gas`), liquid water (:mod:`.liquid`) and proton-disordered ice Ih (:mod:`.ice`).

Each protocol runs molecular dynamics through :func:`run_variants` (the batched engine of
:mod:`symprobe.md.batched`: all replicas of all variants in one state, one force call per step) or ASE
optimisers, and reduces trajectories with :mod:`symprobe.analysis.observables` and :mod:`symprobe.analysis.statistics`. Results are plain
JSON-ready dicts: scalars as ``{"value", "error", "unit"}``, curves as ``{"x", "y", "error"}`` with
non-finite points dropped. Variants of a model:

* ``raw`` — the model as it is;
* ``averaged`` — :class:`~symprobe.symmetrize.GridAverage` on the study grid at every step;
* ``random`` — :class:`~symprobe.symmetrize.RandomRotation` (a new Haar rotation, with inversion, per call);
* ``mts`` — multiple time stepping: raw model inside, the grid-average correction every ``n_inner`` steps
  (on ``mts_grid``, which defaults to the study grid);
* ``raw-repeat`` (:data:`REPEAT`) — the raw model again, with its own seeds and starting structures: compared
  with ``raw`` like any variant, it is the null comparison that tells whether the error bars are calibrated.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from ase import Atoms

from symprobe import so3
from symprobe.files import write_json
from symprobe.models.base import Model

VARIANTS = ("raw", "averaged", "random", "mts")
REPEAT = "raw-repeat"


def scalar(value: float, error: float | None, unit: str) -> dict[str, Any]:
    """A scalar observable with its standard error (None when none can be given)."""
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"observable value is not finite ({value} {unit})")
    return {"value": value, "error": None if error is None or not np.isfinite(error) else float(error), "unit": unit}


def curve(x: np.ndarray, y: np.ndarray, error: np.ndarray | None = None, x_unit: str = "", y_unit: str = "",
          blocks: np.ndarray | None = None) -> dict[str, Any]:
    """A curve with per-point standard errors; points where x, y or the error are not finite are dropped
    (an error that is not finite anywhere means none was estimated and becomes 0). ``blocks`` (n, points):
    the independent block or replica values the error came from, kept under ``blocks`` (NaN → None)."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    e = np.zeros_like(y) if error is None else np.asarray(error, dtype=np.float64).ravel()
    if not np.isfinite(e).any():  # no error estimate at all (e.g. a single segment): 0, not dropped points
        e = np.zeros_like(y)
    keep = np.isfinite(x) & np.isfinite(y) & np.isfinite(e)
    out = {"x": x[keep].tolist(), "y": y[keep].tolist(), "error": e[keep].tolist(), "x_unit": x_unit, "y_unit": y_unit}
    if blocks is not None:
        kept = np.asarray(blocks, dtype=np.float64)[:, keep]
        out["blocks"] = [[float(v) if np.isfinite(v) else None for v in row] for row in kept]
    return out


def variant_potential(model: Model, variant: str, grid: str, n_inner: int, seed: int,
                      mts_grid: str | None = None) -> tuple[Model, Model | None, int]:
    """(potential, MTS correction or None, inner steps per outer step) of a variant of ``model``."""
    from symprobe.symmetrize import AveragingCorrection, GridAverage, RandomRotation

    if variant in ("raw", REPEAT):
        return model, None, 1
    if variant == "averaged":
        return GridAverage(model, so3.get(grid)), None, 1
    if variant == "random":
        return RandomRotation(model, seed, improper=True), None, 1
    if variant == "mts":
        return model, AveragingCorrection(model, so3.get(mts_grid or grid)), int(n_inner)
    raise ValueError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS + (REPEAT,))})")


def replica_seed(seed: int, k: int, variant: str = "raw") -> int:
    """The generator seed of replica ``k`` of a variant in a run seeded ``seed``: the variants share their
    starting momenta and thermostat noise (common random numbers), so that what differs between them is
    the potential (their error bars, each from its own run, are then conservative for the difference);
    :data:`REPEAT` draws its own."""
    return int(np.random.SeedSequence([seed, k] + ([1] if variant == REPEAT else [])).generate_state(1)[0])


def group_variant(name: str) -> tuple[str, int]:
    """(variant, index of its first replica) of a group name: ``"raw"`` → ("raw", 0), ``"raw/3"`` → ("raw", 3)."""
    variant, _, index = name.partition("/")
    return variant, int(index or 0)


def variant_replicas(
    model: Model, starts: Mapping[str, Sequence[Atoms]], *, grid: str, n_inner: int, ensemble: Mapping[str, Any], seed: int,
    mts_grid: str | None = None, initial_temperature_K: float | None = None,
) -> tuple[list[Any], dict[str, list[int]]]:
    """(replicas, the indices of each group's replicas) of the batched engine for every group of ``starts``
    (see :func:`run_variants`): replica k of variant v is seeded :func:`replica_seed` (seed, k, v)."""
    from symprobe.md.batched import Replica
    from symprobe.md.run import thermalized

    replicas, members = [], {}
    for name, structures in starts.items():
        variant, first = group_variant(name)
        members[name] = []
        for k, atoms in enumerate(structures, start=first):
            replica_seed_ = replica_seed(seed, k, variant)
            potential, slow, inner = variant_potential(model, variant, grid, n_inner, replica_seed_, mts_grid)
            start = thermalized(atoms, initial_temperature_K, replica_seed_)
            members[name].append(len(replicas))
            replicas.append(Replica(start, potential, slow, inner, ensemble, replica_seed_, f"{variant} #{k}"))
    return replicas, members


COMPLETE = "complete.json"  # the marker a finished :func:`run_variants` leaves in its directory: its length and groups
MAX_CHECKPOINT_STRIDE = 5000  # steps (2.5 ps at 0.5 fs): a killed long run loses at most this many


def step_unit(groups: Iterable[str], n_inner: int) -> int:
    """The multiple that a run of ``groups`` rounds its length (steps) and strides up to: ``n_inner`` when one of
    them runs MTS, else 1."""
    return int(n_inner) if any(group_variant(g)[0] == "mts" for g in groups) else 1


def checkpoint_stride(steps: int, trajectory_stride: int) -> int:
    """Steps between checkpoints of a run of ``steps``: a tenth of the run, at most :data:`MAX_CHECKPOINT_STRIDE`, at
    least one trajectory frame."""
    return max(int(trajectory_stride), min(int(steps) // 10, MAX_CHECKPOINT_STRIDE))


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
    """Run every group's replicas (``starts[group]``: structures with their momenta) together in one batched
    state; group g writes ``directory/g`` (one log, joined frames). Return the directories. A group is named
    by its variant, alone (``"raw"``) or with the index of its first replica (``"raw/3"``: replicas of one
    variant in separate groups, e.g. independent liquid boxes); replica k of variant v is seeded
    :func:`replica_seed` (seed, k, v).

    A finished run leaves ``complete.json`` and is not rerun; an interrupted one resumes from its checkpoint.
    ``steps`` and the log and checkpoint strides are rounded up to multiples of ``n_inner`` when MTS runs;
    ``initial_temperature_K`` draws fresh momenta for each replica.
    """
    from symprobe.md.run import Group, Strides, run_batched

    directory = Path(directory)
    unit = step_unit(starts, n_inner)
    round_up = lambda n: int(unit * max(1, -(-int(n) // unit)))  # noqa: E731
    steps = round_up(steps)
    marker = directory / COMPLETE
    done = {"steps": steps, "variants": sorted(starts)}
    groups = {name: directory / name for name in starts}
    if marker.exists() and json.loads(marker.read_text()) == done:
        return groups
    replicas, members = variant_replicas(model, starts, grid=grid, n_inner=n_inner, ensemble=ensemble, seed=seed,
                                         mts_grid=mts_grid, initial_temperature_K=initial_temperature_K)
    strides = Strides(log=unit, trajectory=int(trajectory_stride), checkpoint=round_up(checkpoint_stride(steps, trajectory_stride)))
    checkpoint = directory / "checkpoint.npz"
    run_batched(replicas, [Group(members[g], groups[g]) for g in starts], timestep_fs, steps, checkpoint,
                resume=checkpoint.exists(), strides=strides, progress=progress)
    write_json(marker, done)
    return groups


GroupRunner = Callable[[Mapping[str, Sequence[Atoms]], dict[str, Any]], dict[str, Path]]
"""Runs MD groups (name → structures) with :func:`run_variants` settings elsewhere (one task per group,
:func:`symprobe.study.tasks.group_farm`); returns each group's run directory."""


def run_groups(model: Model, starts: Mapping[str, Sequence[Atoms]], directory: Path, settings: dict[str, Any],
               runner: GroupRunner | None = None, progress: bool = True) -> dict[str, Path]:
    """:func:`run_variants` of every group together in ``directory``, or each group by ``runner``."""
    if runner is None:
        return run_variants(model, starts, Path(directory), **settings, progress=progress)
    return runner(starts, settings)


def read_trajectory(directory: Path) -> list[Atoms]:
    """The frames of an MD run's ``trajectory.extxyz``."""
    from ase.io import read

    return read(Path(directory) / "trajectory.extxyz", index=":")


