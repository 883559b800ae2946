"""The task log: every attempt of every task, so that a rerun after a lost worker or a killed client is visible.

A worker appends two JSON lines to ``ROOT/ID/attempts.jsonl`` per attempt (one at its start, one at its end: one
writer per task directory, no shared file on a network file system); :func:`merge_log` gathers the last line of
every attempt into ``ROOT/log.jsonl``: task id, attempt (1, 2, …), worker, host, pid, start and end (Unix time, s;
end null for an attempt whose worker died) and outcome (``done``, ``failed: …`` or ``lost``)."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from symprobe.files import atomic_write

ATTEMPTS = "attempts.jsonl"
LOG = "log.jsonl"


def _append(directory: Path, record: dict[str, Any]) -> None:
    with open(directory / ATTEMPTS, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


def read_attempts(directory: Path) -> list[dict[str, Any]]:
    """The latest record of each attempt of the task in ``directory``, in attempt order (a torn last line skipped)."""
    path, latest = directory / ATTEMPTS, {}
    if not path.exists():
        return []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a worker killed while writing
            continue
        latest[record["attempt"]] = record
    return [latest[k] for k in sorted(latest)]


def start_attempt(directory: Path, task_id: str, worker: str) -> dict[str, Any]:
    """Record the start of a new attempt of ``task_id`` in ``directory``; return its record."""
    directory.mkdir(parents=True, exist_ok=True)
    record = {"task": task_id, "attempt": len(read_attempts(directory)) + 1, "worker": worker, "host": socket.gethostname(),
              "pid": os.getpid(), "start": time.time(), "end": None, "outcome": "running"}
    _append(directory, record)
    return record


def end_attempt(directory: Path, record: dict[str, Any], outcome: str) -> None:
    """Record the end of the attempt ``record`` with ``outcome``."""
    _append(directory, {**record, "end": time.time(), "outcome": outcome})


def merge_log(root: Path, task_ids: list[str], running: bool = False) -> list[dict[str, Any]]:
    """Every attempt of ``task_ids`` under ``root``, by start time, written to ``root/log.jsonl`` (atomically); an
    attempt without an end is ``lost`` unless ``running`` (the run goes on)."""
    records = [record for task_id in task_ids for record in read_attempts(root / task_id)]
    if not running:
        records = [{**r, "outcome": "lost"} if r["end"] is None else r for r in records]
    records.sort(key=lambda r: (r["start"], r["task"]))
    atomic_write(root / LOG, "".join(json.dumps(r) + "\n" for r in records))
    return records
