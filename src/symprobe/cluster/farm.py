"""Running a list of independent, idempotent tasks (:func:`run_tasks`): in turn in this process when no cluster is
given, else on Dask, each task's result written atomically to its own directory, finished tasks skipped.

A :class:`Task` is a module-level function and small picklable arguments (spec strings, structures): models are
loaded on the worker from their spec (:func:`symprobe.cluster.worker.worker_model`), never sent through the graph.
A task that raises fails the run at once (no retries); a task whose worker died is rerun by Dask on another worker,
up to ``distributed.scheduler.allowed-failures`` times (3). Every attempt is in the task log (:mod:`.log`)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from symprobe.checks import differences
from symprobe.cluster.log import end_attempt, merge_log, start_attempt
from symprobe.cluster.progress import TaskProgress
from symprobe.cluster.spec import ClusterError, ClusterSpec
from symprobe.files import write_json

RESULT = "result.json"
IDENTITY = "run.json"
POLL_S = 2.0  # how often the running count is refreshed on a terminal


@dataclass(frozen=True)
class Task:
    """One unit of work: ``function(directory, *args)`` returns a JSON-ready dict, kept as ``directory/result.json``;
    ``directory`` (``ROOT/id``) also holds the task's checkpoints. ``id`` is unique and safe as a directory name."""

    id: str
    function: Callable[..., dict[str, Any]]
    args: tuple = field(default=())


class TaskFailed(RuntimeError):
    """A task raised an error that is not bad input (a bug): the message names the task."""


class TaskInputError(ValueError):
    """A task failed on bad input: the message names the task and the problem."""


def claim_task_root(root: Path, identity: dict[str, Any], resume: bool) -> None:
    """Make ``root`` the task directory of a run with ``identity`` (JSON values): resuming, the interrupted run's
    identity must match; otherwise it is recorded (the caller has cleared ``root`` with the output directory)."""
    path = Path(root) / IDENTITY
    if resume:
        if not path.exists():
            raise ClusterError(f"--resume: no tasks of an interrupted run in {root} ({IDENTITY} is missing)")
        changed = differences(json.loads(path.read_text()), identity)
        if changed:
            raise ClusterError(f"--resume: the settings differ from the run in {root} (saved → now): {'; '.join(changed)}; "
                               "use --overwrite to start again")
        return
    write_json(path, identity)


def finished(root: Path, task: Task) -> bool:
    """Whether ``task`` has its result under ``root`` (it is then skipped on resume)."""
    return (Path(root) / task.id / RESULT).exists()


def run_task(task: Task, root: str, threads: int | None, worker: str) -> dict[str, Any]:
    """Run ``task`` under ``root`` (or return the result an earlier attempt left) with ``threads`` torch threads
    (None: as they are), recording the attempt in the task log."""
    directory = Path(root) / task.id
    if (directory / RESULT).exists():
        return json.loads((directory / RESULT).read_text())
    if threads is not None:
        import torch

        torch.set_num_threads(threads)  # the nanny set OMP_NUM_THREADS=1; this is the number the task asked for
    record = start_attempt(directory, task.id, worker)
    try:
        result = task.function(directory, *task.args)
    except BaseException as error:
        end_attempt(directory, record, f"failed: {type(error).__name__}: {' '.join(str(error).split())}")
        raise
    write_json(directory / RESULT, result)
    end_attempt(directory, record, "done")
    return result


def _run_on_worker(task: Task, root: str, threads: int) -> dict[str, Any]:
    from distributed import get_worker

    from symprobe.cluster.worker import restore_allocator

    restore_allocator()
    return run_task(task, root, threads, str(get_worker().name))


def run_tasks(tasks: Sequence[Task], root: str | Path, cluster: ClusterSpec | None = None, progress: bool = True,
              input_errors: tuple[type[BaseException], ...] = (ValueError, OSError)) -> dict[str, dict[str, Any]]:
    """The result of every task (by id), running those without a result under ``root``: in turn here without
    ``cluster``, else on it. An error of a type in ``input_errors`` raises :class:`TaskInputError`, any other
    :class:`TaskFailed`; a task whose workers kept dying raises :class:`ClusterError`. ``root/log.jsonl`` lists
    every attempt when the run ends (also when it fails)."""
    root = Path(root)
    ids = [task.id for task in tasks]
    if len(set(ids)) != len(ids):
        raise ValueError("run_tasks: task ids must be unique")
    todo = [task for task in tasks if not finished(root, task)]
    bar = TaskProgress(len(tasks), len(tasks) - len(todo), enabled=progress)
    try:
        if cluster is None:
            for task in todo:
                bar.update(bar.done, 1)
                _named(task, input_errors, partial(run_task, task, str(root), None, "local"))
                bar.update(bar.done + 1, 0)
        elif todo:
            _run_on_cluster(todo, root, cluster, bar, input_errors)
    finally:
        bar.close()
        merge_log(root, ids)
    return {task.id: json.loads((root / task.id / RESULT).read_text()) for task in tasks}


def _named(task: Task, input_errors: tuple[type[BaseException], ...], call: Callable[[], Any]) -> Any:
    """``call()``, its error (other than an interrupt) re-raised naming ``task``."""
    try:
        return call()
    except input_errors as error:
        raise TaskInputError(f"task {task.id}: {_one_line(error)}") from error
    except Exception as error:
        raise TaskFailed(f"task {task.id}: {type(error).__name__}: {_one_line(error)}") from error


def _one_line(error: BaseException) -> str:
    if isinstance(error, OSError) and error.strerror:
        return " ".join(f"{error.filename}: {error.strerror}".split()) if error.filename else error.strerror
    return " ".join((str(error) or type(error).__name__).split())


def _run_on_cluster(todo: list[Task], root: Path, cluster: ClusterSpec, bar: TaskProgress,
                    input_errors: tuple[type[BaseException], ...]) -> None:
    import uuid

    import dask
    from distributed import KilledWorker, wait

    from symprobe.cluster.connect import open_client

    run = uuid.uuid4().hex[:8]
    waiting = list(reversed(todo))
    pending: dict[Any, Task] = {}
    with open_client(cluster) as client:

        def hand_out() -> None:
            """Submit tasks while fewer are pending than the workers have threads (at least one), so that each goes to
            the first worker that frees up: Dask would assign them all at once, and its work stealing may leave a
            task queued behind an hour-long one while another worker sits idle."""
            slots = max(1, sum(client.nthreads().values()))
            while waiting and len(pending) < slots:
                task = waiting.pop()
                pending[client.submit(_run_on_worker, task, str(root), cluster.threads_per_task, key=f"symprobe-{task.id}-{run}",
                                      pure=False, retries=0)] = task

        hand_out()
        try:
            while pending:
                try:
                    done = wait(list(pending), timeout=POLL_S, return_when="FIRST_COMPLETED").done
                except TimeoutError:  # none finished in POLL_S: refresh the running count
                    done = set()
                for future in done:
                    task = pending.pop(future)
                    try:
                        _named(task, input_errors, future.result)
                    except TaskFailed as error:
                        if isinstance(error.__cause__, KilledWorker):
                            allowed = dask.config.get("distributed.scheduler.allowed-failures")
                            raise ClusterError(f"task {task.id}: its worker died {allowed + 1} times (out of memory or "
                                               "wall time?); finished tasks are kept: run again with --resume") from None
                        raise
                hand_out()
                bar.update(bar.done + len(done), _running(client))
        finally:
            client.cancel(list(pending))


def _running(client: Any) -> int:
    """Tasks running now: those the scheduler has on each worker, at most its thread count."""
    threads = client.nthreads()
    return sum(min(len(keys), threads.get(worker, 1)) for worker, keys in client.processing().items())
