"""The audit farmed out (:func:`structure_farm`): one :class:`~symprobe.cluster.Task` per structure, run in turn or on
a cluster (:mod:`symprobe.cluster`), the model loaded on the worker from its spec string."""

from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

from ase import Atoms

from symprobe.audit.precision import in_float64
from symprobe.audit.results import AuditError, StructureAudit
from symprobe.audit.run import Farm
from symprobe.audit.structure import audit_structure
from symprobe.cluster import ClusterSpec, Task, run_tasks, worker_model
from symprobe.models.base import Model
from symprobe.so3 import Quadrature
from symprobe.structures import StructureError, structure_label


@lru_cache(maxsize=2)
def audited_model(spec: str, dtype: str, device: str) -> Model:
    """The model of ``spec`` as the audit evaluates it: in float64 (``dtype`` ``float64``) or its own precision."""
    if dtype == "float64":
        return in_float64(worker_model(spec, "float64", device))
    return worker_model(spec, None, device)


def audit_structure_task(directory: Path, spec: str, dtype: str, device: str, atoms: Atoms, index: int, grid: Quadrature,
                         lmax: int, convergence: list[Quadrature], rule: Quadrature, skip_failures: bool) -> dict[str, Any]:
    """One structure's audit as JSON: ``{"structure": …}``, or ``{"skipped": …}`` when it fails and ``skip_failures``."""
    model = audited_model(spec, dtype, device)
    try:
        result = audit_structure(model, atoms, grid, lmax, convergence, rule, index=index)
    except (StructureError, AuditError) as error:
        if not skip_failures:
            raise
        return {"skipped": {"index": index, "name": structure_label(atoms, index), "reason": str(error)}}
    return {"structure": asdict(result)}


def structure_farm(spec: str, dtype: str, device: str, root: Path, cluster: ClusterSpec | None, progress: bool = True,
                   input_errors: tuple[type[BaseException], ...] = (ValueError, AuditError, OSError)) -> Farm:
    """A ``farm`` for :func:`~symprobe.audit.audit`: each structure a task ``structure-INDEX`` under ``root`` (finished
    ones kept), run on ``cluster`` (None: in turn here) with the model ``spec`` in ``dtype`` on ``device``."""

    def farm(todo: list[tuple[int, Atoms]], grid: Quadrature, lmax: int, convergence: list[Quadrature], rule: Quadrature,
             skip_failures: bool) -> tuple[list[StructureAudit], list[dict[str, Any]]]:
        tasks = [Task(f"structure-{k:06d}", audit_structure_task,
                      (spec, dtype, device, atoms, k, grid, lmax, convergence, rule, skip_failures)) for k, atoms in todo]
        outcomes = run_tasks(tasks, root, cluster, progress, input_errors).values()
        return ([StructureAudit.from_dict(o["structure"]) for o in outcomes if "structure" in o],
                [o["skipped"] for o in outcomes if "skipped" in o])

    return farm
