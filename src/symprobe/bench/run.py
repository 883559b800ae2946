"""The bench farmed out (:func:`farmed_bench`): one task per model and structure (:mod:`symprobe.cluster`), each model
loaded on its worker from its spec; finished tasks are kept and not rerun."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ase import Atoms

from symprobe.bench.metrics import (
    DEFAULT_GRID,
    bench_header,
    bench_structure,
    merged_model,
)
from symprobe.cluster import ClusterSpec, Task, run_tasks, worker_model


def bench_task(directory: Path, spec: str, device: str, name: str, atoms: Atoms, grid: str) -> dict[str, Any]:
    """:func:`bench_structure` of the model ``spec`` on ``atoms``, with the model's name and the seconds it took."""
    start = time.perf_counter()
    model = worker_model(spec, None, device)
    outcome = bench_structure(model, name, atoms, grid)
    return {**outcome, "model": getattr(model, "name", type(model).__name__), "seconds": time.perf_counter() - start}


def farmed_bench(specs: list[str], structures: dict[str, Atoms], root: str | Path, grid: str = DEFAULT_GRID, device: str = "cpu",
          cluster: ClusterSpec | None = None, progress: bool = True,
          input_errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> dict[str, Any]:
    """Every model (spec) on every structure: tasks ``MM-SS`` (model, structure numbers) under ``root`` on ``cluster``
    (None: in turn here); per model the :func:`merged_model` bench and the seconds its tasks took (s, summed): the same
    document as :func:`~symprobe.bench.metrics.bench`."""
    tasks = [Task(f"{m:02d}-{s:03d}", bench_task, (spec, device, name, atoms, grid))
             for m, spec in enumerate(specs) for s, (name, atoms) in enumerate(structures.items())]
    outcomes = run_tasks(tasks, root, cluster, progress, input_errors)
    result = bench_header(grid, structures)
    for m, spec in enumerate(specs):
        mine = {name: outcomes[f"{m:02d}-{s:03d}"] for s, name in enumerate(structures)}
        result["models"][spec] = merged_model(next(iter(mine.values()))["model"], mine, grid)
        result["seconds"][spec] = sum(outcome["seconds"] for outcome in mine.values())
    return result
