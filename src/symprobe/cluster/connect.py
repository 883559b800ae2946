"""A Dask client on the cluster a :class:`~symprobe.cluster.spec.ClusterSpec` names, and everything it started
stopped when the block ends (:func:`open_client`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from symprobe.cluster.spec import ClusterError, ClusterSpec, SlurmSettings

CONNECT_TIMEOUT_S = 30
WORKER_WAIT_S = 600  # a SLURM job may wait in the queue; the first worker must start within this


@contextmanager
def open_client(spec: ClusterSpec) -> Iterator[Any]:
    """A ``distributed.Client`` on ``spec``'s cluster, each of whose workers runs one task at a time: a
    ``LocalCluster`` of ``spec.workers`` processes on the loopback interface, the scheduler at ``spec.address``,
    or a ``dask_jobqueue.SLURMCluster`` scaled to its ``jobs``. A cluster started here is closed at the end."""
    import dask
    from distributed import Client

    with ExitStack() as stack:
        # tasks that start processes of their own (MD engines) need non-daemonic workers
        stack.enter_context(dask.config.set({"distributed.worker.daemon": False}))
        if spec.kind == "local":
            cluster = stack.enter_context(_local_cluster(spec.workers))
            client = stack.enter_context(Client(cluster))
        elif spec.kind == "tcp":
            try:
                client = stack.enter_context(Client(spec.address, timeout=CONNECT_TIMEOUT_S))
            except (OSError, TimeoutError) as error:
                raise ClusterError(f"--cluster {spec.text}: no Dask scheduler answers there ({' '.join(str(error).split())})") from None
        else:
            assert spec.slurm is not None
            cluster = stack.enter_context(_slurm_cluster(spec.slurm))
            client = stack.enter_context(Client(cluster))
            _wait_for_a_worker(client, spec)
        yield client


def _local_cluster(workers: int):
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=None, silence_logs=logging.CRITICAL)  # task errors: one line from run_tasks


def _slurm_cluster(settings: SlurmSettings):
    """One Dask worker per ``threads_per_worker`` CPUs of each job, each running one task at a time (the task sets its
    torch threads): Dask counts one core per worker, SLURM books ``cores`` CPUs per job (``job_cpu``)."""
    try:
        from dask_jobqueue import SLURMCluster
    except ImportError:
        raise ClusterError("slurm: needs dask-jobqueue (pip install 'symprobe[cluster]')") from None
    options = {key: getattr(settings, key) for key in ("queue", "account", "log_directory", "local_directory", "python",
                                                        "interface") if getattr(settings, key) is not None}
    cluster = SLURMCluster(cores=settings.processes, processes=settings.processes, job_cpu=settings.cores,
                           memory=settings.memory, walltime=settings.walltime,
                           job_script_prologue=list(settings.job_script_prologue),
                           job_extra_directives=list(settings.job_extra_directives),
                           scheduler_options={"dashboard_address": None}, silence_logs="error", **options)
    cluster.scale(jobs=settings.jobs)
    return cluster


def _wait_for_a_worker(client: Any, spec: ClusterSpec) -> None:
    try:
        client.wait_for_workers(1, timeout=WORKER_WAIT_S)
    except TimeoutError:
        raise ClusterError(f"--cluster {spec.text}: no worker started within {WORKER_WAIT_S} s (see squeue and the job "
                           "logs)") from None
