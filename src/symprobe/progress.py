"""Progress bars: tqdm on a terminal; in a log (output not a terminal), one plain line per ``LOG_PERCENT_STEP`` %
of the work instead of a bar redrawn with carriage returns."""

from __future__ import annotations

import math
import sys
from collections.abc import Iterable
from typing import Any

from tqdm import tqdm

LOG_PERCENT_STEP = 10  # % of the work between two lines of a progress report in a log


class LogProgress(tqdm):
    """A tqdm whose display writes one whole line each time the work passes another ``LOG_PERCENT_STEP`` %
    (and at 0 % and at the end), for output that is not a terminal."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._next_percent = 0.0
        self._last_n: float | None = None
        super().__init__(*args, **kwargs)

    def display(self, msg: str | None = None, pos: int | None = None) -> bool:
        if msg is not None:  # tqdm's clearing of the bar: nothing to clear in a log
            return False
        total = self.total or 0
        percent = 100.0 * self.n / total if total else 0.0
        if self._last_n is None or (total and percent >= self._next_percent):
            self._write_line()
            self._next_percent = (math.floor(percent / LOG_PERCENT_STEP) + 1) * LOG_PERCENT_STEP
        return True

    def _write_line(self) -> None:
        self.fp.write(self.__str__().strip() + "\n")
        self.fp.flush()
        self._last_n = self.n

    def close(self) -> None:
        if not self.disable and self._last_n != self.n:
            self._write_line()  # the final count, when the last step did not cross a line
        self.leave = False
        super().close()


def progress_bar(iterable: Iterable | None = None, *, total: float | None = None, desc: str | None = None,
                 unit: str = "it", enabled: bool = True, in_logs: bool = True, file=None) -> tqdm:
    """A progress bar over ``iterable`` (or ``total`` units updated by hand) on stderr (or ``file``): tqdm on a
    terminal, :class:`LogProgress` otherwise (none there unless ``in_logs``: for bars that a summary line
    follows anyway); nothing when not ``enabled``."""
    file = sys.stderr if file is None else file
    terminal = hasattr(file, "isatty") and file.isatty()
    shown = enabled and (terminal or in_logs)
    if terminal or not shown:
        return tqdm(iterable, total=total, desc=desc, unit=unit, disable=not shown, file=file)
    size = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    every = max(1, math.ceil(size * LOG_PERCENT_STEP / 100)) if size else 1
    return LogProgress(iterable, total=size, desc=desc, unit=unit, file=file, mininterval=0, miniters=every)
