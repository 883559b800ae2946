"""The study's pieces farmed out: its MD (:func:`group_farm`): each MD group a task (:mod:`symprobe.cluster`) with its run and
checkpoints in its own directory, the model loaded on the worker from its spec: one liquid replica of one variant
(``liquid``), one variant's batch of gas molecules (``gas_nve``, ``gas_nvt``); and each ice cell's relaxations a task
(:func:`ice_farm`): the stages of :data:`~symprobe.study.plan.FARMED_STAGES`. A task rerun after its worker died
continues from the MD run's last checkpoint."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase import Atoms

from symprobe.cluster import ClusterSpec, Task, run_tasks, worker_model
from symprobe.study.variants import GroupRunner, run_variants


@dataclass(frozen=True)
class StudyFarm:
    """Where the study's tasks run: the model's spec (loaded on each worker on ``device``) and the cluster (None: in
    turn in this process)."""

    spec: str
    device: str = "cpu"
    cluster: ClusterSpec | None = None
    progress: bool = True


def group_task(directory: Path, spec: str, device: str, group: str, structures: list[Atoms], settings: dict[str, Any]) -> dict[str, Any]:
    """The MD run of one group (``raw``, ``raw/3``: a variant, and the seed index of its first replica) under
    ``directory``, resumed from its checkpoint when an earlier attempt left one; the run's directory (relative) and the
    step it resumed from."""
    from symprobe.md.run import read_checkpoint

    checkpoint = directory / "checkpoint.npz"
    resumed = int(read_checkpoint(checkpoint)[1]["nsteps"]) if checkpoint.exists() else 0
    runs = run_variants(worker_model(spec, None, device), {group: structures}, directory, **settings, progress=False)
    return {"run": str(runs[group].relative_to(directory)), "resumed_from_step": resumed}


def task_id(stage: str, group: str) -> str:
    """The task id of MD group ``group`` of ``stage`` (``liquid``, ``raw/3`` → ``liquid-raw-3``)."""
    return f"{stage}-{group.replace('/', '-')}"


def group_farm(farm: StudyFarm, root: Path, stage: str) -> GroupRunner:
    """A ``runner`` for the study's MD (:func:`~symprobe.study.variants.run_groups`): each group a task under ``root``."""

    def run(groups: Mapping[str, Sequence[Atoms]], settings: dict[str, Any]) -> dict[str, Path]:
        tasks = [Task(task_id(stage, group), group_task, (farm.spec, farm.device, group, list(structures), settings))
                 for group, structures in groups.items()]
        results = run_tasks(tasks, root, farm.cluster, farm.progress)
        return {group: root / task.id / results[task.id]["run"] for group, task in zip(groups, tasks)}

    return run


def ice_cell_task(directory: Path, spec: str, device: str, atoms: Atoms, grid: str, fmax: float, max_steps: int,
                  grid_labels: tuple[str, ...]) -> dict[str, Any]:
    """:func:`~symprobe.study.ice.ice_cell` of one cell: the model raw and averaged over paper grid ``grid``, relaxed to
    ``fmax`` (eV/Å) in at most ``max_steps``, and in float64 on the paper grids ``grid_labels``."""
    from symprobe import so3
    from symprobe.audit import in_float64
    from symprobe.study.ice import ice_cell
    from symprobe.symmetrize import GridAverage

    model = worker_model(spec, None, device)
    return ice_cell(model, GridAverage(model, so3.paper_grid(grid)), atoms, fmax, max_steps,
                    [so3.paper_grid(label) for label in grid_labels], in_float64(model))


def ice_farm(farm: StudyFarm, root: Path, cells: Sequence[Atoms], grid: str, fmax: float, max_steps: int,
             grid_labels: tuple[str, ...]) -> list[dict[str, Any]]:
    """:func:`ice_cell_task` of every cell, each a task ``ice-K`` under ``root``; the cells' results in order."""
    tasks = [Task(f"ice-{k}", ice_cell_task, (farm.spec, farm.device, atoms, grid, fmax, max_steps, tuple(grid_labels)))
             for k, atoms in enumerate(cells)]
    results = run_tasks(tasks, root, farm.cluster, farm.progress)
    return [results[task.id] for task in tasks]
