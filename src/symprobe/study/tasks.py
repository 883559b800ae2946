"""The study's liquid replicas farmed out (:func:`replica_farm`): each replica of each variant one task
(:mod:`symprobe.cluster`) with its MD run and checkpoints in its own directory, the model loaded on the worker from
its spec; a task rerun after its worker died continues from the run's last checkpoint."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ase import Atoms

from symprobe.cluster import ClusterSpec, Task, run_tasks, worker_model
from symprobe.study.liquid import GroupRunner
from symprobe.study.variants import run_variants


@dataclass(frozen=True)
class StudyFarm:
    """Where the study's tasks run: the model's spec (loaded on each worker on ``device``) and the cluster (None: in
    turn in this process)."""

    spec: str
    device: str = "cpu"
    cluster: ClusterSpec | None = None
    progress: bool = True


def replica_task(directory: Path, spec: str, device: str, group: str, box: Atoms, settings: dict[str, Any]) -> dict[str, Any]:
    """The MD run of one replica (``group``, e.g. ``raw/3``: its variant and seed index) under ``directory``, resumed from
    its checkpoint when an earlier attempt left one; the run's directory (relative) and the step it resumed from."""
    from symprobe.md.run import read_checkpoint

    checkpoint = directory / "checkpoint.npz"
    resumed = int(read_checkpoint(checkpoint)[1]["nsteps"]) if checkpoint.exists() else 0
    runs = run_variants(worker_model(spec, None, device), {group: [box]}, directory, **settings, progress=False)
    return {"run": str(runs[group].relative_to(directory)), "resumed_from_step": resumed}


def replica_task_id(group: str) -> str:
    """The task id of MD group ``group`` (``raw/3`` → ``liquid-raw-3``)."""
    return "liquid-" + group.replace("/", "-")


def replica_farm(farm: StudyFarm, root: Path) -> GroupRunner:
    """A ``run_groups`` for :func:`~symprobe.study.liquid.liquid_runs`: each one-box group a task under ``root``."""

    def run(groups: dict[str, list[Atoms]], settings: dict[str, Any]) -> dict[str, Path]:
        tasks = [Task(replica_task_id(group), replica_task, (farm.spec, farm.device, group, boxes[0], settings))
                 for group, boxes in groups.items()]
        results = run_tasks(tasks, root, farm.cluster, farm.progress)
        return {group: root / task.id / results[task.id]["run"] for group, task in zip(groups, tasks)}

    return run
