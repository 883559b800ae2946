"""Farming independent work (audited structures, bench rows, study pieces) in turn here or on a Dask cluster.

Modules: :mod:`.spec` (``--cluster`` specs and the SLURM YAML), :mod:`.connect` (a Dask client on the cluster),
:mod:`.farm` (:func:`run_tasks`: tasks with results in their own directories, skipped when finished), :mod:`.log`
(the task log of every attempt), :mod:`.progress` (one display over the tasks) and :mod:`.worker` (models loaded on
the worker from their spec). Running on SLURM: docs/cluster.md.
"""

from symprobe.cluster.farm import (
           Task,
           TaskFailed,
           TaskInputError,
           claim_task_root,
           run_tasks,
)
from symprobe.cluster.spec import (
           SPEC_FORMS,
           ClusterError,
           ClusterSpec,
           SlurmSettings,
           parse_cluster,
)
from symprobe.cluster.worker import worker_model

__all__ = ["SPEC_FORMS", "ClusterError", "ClusterSpec", "SlurmSettings", "Task", "TaskFailed", "TaskInputError",
           "claim_task_root", "parse_cluster", "run_tasks", "worker_model"]
