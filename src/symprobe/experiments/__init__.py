"""The paper's experiments (Langer, Pozdnyakov & Ceriotti 2024) as protocols: gas-phase molecules
(:mod:`.gas`), liquid water (:mod:`.liquid`) and proton-disordered ice Ih (:mod:`.ice`).

Each protocol runs molecular dynamics through :func:`symprobe.md.run_md` (or ASE optimisers) and reduces
trajectories with :mod:`symprobe.observables` and :mod:`symprobe.statistics`. Results are plain
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
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
from ase import Atoms

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


def symmetrizer_config(variant: str, grid: str, n_inner: int, seed: int, mts_grid: str | None = None) -> dict[str, Any]:
    """The :func:`symprobe.md.run_md` symmetrizer section of a variant (MTS averages over ``mts_grid`` or ``grid``)."""
    if variant == "raw":
        return {"kind": "none"}
    if variant == "averaged":
        return {"kind": "grid", "grid": grid}
    if variant == "random":
        return {"kind": "random", "inversion": True, "seed": seed}
    if variant == "mts":
        return {"kind": "mts", "grid": mts_grid or grid, "n_inner": n_inner}
    raise ValueError(f"unknown variant {variant!r} (one of {', '.join(VARIANTS)})")


def run_variant_md(
    model: Model,
    structure: Atoms,
    variant: str,
    directory: Path,
    *,
    grid: str,
    n_inner: int,
    mts_grid: str | None = None,
    ensemble: Mapping[str, Any],
    steps: int,
    timestep_fs: float,
    seed: int,
    trajectory_stride: int,
    initial_temperature_K: float | None = None,
    engine: str = "ase",
    progress: bool = True,
) -> Path:
    """Run (or resume, or reuse) one MD run of ``variant`` in ``directory`` on ``engine`` (ase or ipi,
    see :mod:`symprobe.md`); return the directory.

    A finished run leaves ``complete.json`` and is not rerun; an interrupted one resumes from its
    checkpoint (bit for bit, see :mod:`symprobe.md`). Strides are rounded up to multiples of ``n_inner``
    for MTS, and ``steps`` too.
    """
    from symprobe.md import run_md

    directory = Path(directory)
    marker = directory / "complete.json"
    stride_unit = n_inner if variant == "mts" else 1
    round_up = lambda n: int(stride_unit * max(1, -(-int(n) // stride_unit)))  # noqa: E731
    steps = round_up(steps)
    config = {
        "structure": structure,
        "model": model,
        "symmetrizer": symmetrizer_config(variant, grid, n_inner, seed, mts_grid),
        "ensemble": dict(ensemble),
        "timestep_fs": timestep_fs,
        "steps": steps,
        "seed": seed,
        "initial_temperature_K": initial_temperature_K,
        "engine": engine,
        "output": {
            "directory": str(directory),
            "trajectory": "trajectory.extxyz",
            "trajectory_stride": round_up(trajectory_stride),
            "log_stride": stride_unit,
            "checkpoint_stride": round_up(max(trajectory_stride, steps // 10)),
            "progress": progress,
        },
    }
    if marker.exists() and json.loads(marker.read_text()).get("steps") == steps:
        return directory
    resume = (directory / "checkpoint.npz").exists()
    run_md(config, resume=resume)
    write_json(marker, {"steps": steps, "variant": variant})
    return directory


def read_trajectory(directory: Path) -> list[Atoms]:
    """The frames of an MD run's ``trajectory.extxyz``."""
    from ase.io import read

    return read(Path(directory) / "trajectory.extxyz", index=":")


def write_json(path: Path, data: Any) -> Path:
    """Write ``data`` as JSON atomically (temporary file, then rename); refuses NaN and infinities."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(data, indent=1, allow_nan=False)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
