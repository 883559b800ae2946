"""Stopping long work cleanly on SIGINT (Ctrl-C), SIGTERM and a wall-time limit (SIGALRM, :func:`time_limit`).

Inside :func:`deferred_signals` the first signal only sets ``stop.signal``; the loop checks it between
steps, writes its checkpoint and raises :class:`Interrupted`, so a checkpoint is never taken half-way
through a step. A second signal raises ``KeyboardInterrupt`` at once. The CLI turns both into exit code 130,
or 75 (:class:`TimeLimit`) when the time limit stopped the work.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGALRM)


class Interrupted(KeyboardInterrupt):
    """Work stopped by a signal after saving its state; the message says what was kept and how to go on."""


class TimeLimit(Interrupted):
    """Work stopped at its wall-time limit after saving its state; running the same command again continues it."""


@dataclass
class Deadline:
    """The end of a wall-time limit (time.monotonic() seconds; None: no limit)."""

    at: float | None = None

    @property
    def passed(self) -> bool:
        """Whether the deadline is set and reached (monotonic clock)."""
        return self.at is not None and time.monotonic() >= self.at


@dataclass
class StopRequest:
    """The signal received inside :func:`deferred_signals` (None while none has come)."""

    signal: int | None = None

    @property
    def requested(self) -> bool:
        """Whether a stop signal (SIGINT or SIGTERM) has been received."""
        return self.signal is not None

    def interrupted(self, what: str) -> Interrupted:
        """The exception to raise once the state is saved: '<SIGNAL>: <what>'."""
        return Interrupted(f"{signal.Signals(self.signal).name}: {what}")


@contextmanager
def deferred_signals() -> Iterator[StopRequest]:
    """Record SIGINT/SIGTERM in the yielded :class:`StopRequest` instead of stopping at once; restore the
    previous handlers afterwards, and raise :class:`Interrupted` then if a signal came that the loop did not act on
    (during its last step). Outside the main thread signals cannot be caught: nothing changes there."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return

    def handler(number: int, frame: object) -> None:
        if stop.requested:
            raise KeyboardInterrupt
        stop.signal = number

    previous = {number: signal.signal(number, handler) for number in SIGNALS}
    try:
        yield stop
    finally:
        for number, old in previous.items():
            signal.signal(number, old)
    if stop.requested:  # it came during the last step: the work is done and saved, but the stop must not be lost
        raise stop.interrupted("received as the work ended (its state is saved)")


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Make SIGTERM raise ``KeyboardInterrupt`` like Ctrl-C inside the block (main thread only; the CLI)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextmanager
def time_limit(seconds: float | None) -> Iterator[Deadline]:
    """SIGALRM after ``seconds`` of wall time: inside :func:`deferred_signals` the running loop saves its checkpoint and
    stops; elsewhere ``KeyboardInterrupt`` is raised at once. Yields the :class:`Deadline` (main thread only; None:
    no limit)."""
    if seconds is None or threading.current_thread() is not threading.main_thread():
        yield Deadline()
        return

    def handler(number: int, frame: object) -> None:
        raise KeyboardInterrupt

    deadline = Deadline(time.monotonic() + seconds)
    previous = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield deadline
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
