"""One progress display over a run's tasks: done of total, the running count and the estimated time left; a
tqdm bar on a terminal, else one line per tenth of the tasks (logs of batch jobs do not flood)."""

from __future__ import annotations

import sys
import time
from typing import TextIO


class TaskProgress:
    """Progress of ``total`` tasks of which ``done`` are finished before the run starts (resumed)."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True, stream: TextIO | None = None):
        self.total, self.done, self.running = total, done, 0
        self.enabled, self.stream = enabled and total > done, stream or sys.stderr
        self.first, self.started = done, time.monotonic()
        self.tenth = self._tenth()
        self.bar = None
        if self.enabled and self.stream.isatty():
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total, initial=done, desc="tasks", unit="task", file=self.stream)
        elif self.enabled:
            self._line()

    def _tenth(self) -> int:
        return (10 * self.done) // max(self.total, 1)

    def remaining_s(self) -> float | None:
        """Estimated seconds left, from the rate of the tasks finished in this run (None before the first)."""
        finished = self.done - self.first
        if finished <= 0:
            return None
        return (time.monotonic() - self.started) / finished * (self.total - self.done)

    def update(self, done: int, running: int) -> None:
        """``done`` tasks finished, ``running`` running now."""
        advanced, self.done, self.running = done - self.done, done, running
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.update(advanced)
            self.bar.set_postfix(running=running, refresh=True)
        elif self._tenth() > self.tenth:
            self.tenth = self._tenth()
            self._line()

    def _line(self) -> None:
        left = self.remaining_s()
        eta = "" if left is None else f", about {_duration(left)} left"
        print(f"[tasks] {self.done}/{self.total} done ({100 * self.done // max(self.total, 1)} %), {self.running} running{eta}",
              file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"
