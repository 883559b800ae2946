"""One progress display over a run's tasks (:func:`symprobe.progress.progress_bar`: a bar on a terminal, one line
per tenth of the tasks in a log), with the running count and tqdm's estimate of the time left."""

from __future__ import annotations


class TaskProgress:
    """Progress of ``total`` tasks of which ``done`` were finished before this run (resumed: not counted in the rate)."""

    def __init__(self, total: int, done: int = 0, enabled: bool = True):
        from symprobe.progress import progress_bar

        self.done = done
        kept = f" ({done} of {total} kept)" if done else ""
        self.bar = progress_bar(total=total - done, desc=f"tasks{kept}", unit="task", enabled=enabled and total > done)

    def update(self, done: int, running: int) -> None:
        """``done`` tasks finished in all, ``running`` running now."""
        self.bar.set_postfix(running=running, refresh=False)
        self.bar.update(done - self.done)
        self.done = done

    def close(self) -> None:
        """Close the bar (its last line stays)."""
        self.bar.close()
