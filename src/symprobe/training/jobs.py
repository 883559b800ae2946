"""Several trainings at once, one process each, or in turn: what the training benchmarks' ``--jobs`` does."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from typing import Any


def run_trainings(function: Callable[..., Any], calls: Sequence[tuple[Any, ...]], jobs: int) -> list[Any]:
    """``function(*call)`` for every call of ``calls``: in this process in turn when ``jobs`` is 1, else in ``jobs``
    processes at once (``function`` and its arguments must pickle); the results in the order of ``calls``."""
    if jobs == 1:
        return [function(*call) for call in calls]
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        return list(pool.map(function, *zip(*calls)))
