"""Overall progress of a sweep as one line per started run: which run of how many, time elapsed, time left.

A line, not a bar: it stays in the terminal and in piped logs after the run's own progress bars are gone."""

from __future__ import annotations

import time
from typing import Callable


def fmt_duration(seconds: float) -> str:
    """`1:02:03`, or `2:03` under an hour."""
    m, s = divmod(int(round(seconds)), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class SweepProgress:
    """Counts started and ended runs of `total`; the estimate of the time left is the mean time of the runs that
    ended so far times the runs not ended (none before the first run ends)."""

    def __init__(self, total: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.total = total
        self.clock = clock
        self.start = clock()
        self.started = 0
        self.ended = 0

    def begin(self) -> str:
        """Note that one more run starts; its progress text."""
        self.started += 1
        elapsed = self.clock() - self.start
        text = f"run {self.started} of {self.total}, {fmt_duration(elapsed)} elapsed"
        if self.ended:
            text += f", about {fmt_duration(elapsed / self.ended * (self.total - self.ended))} left"
        return text

    def end(self) -> None:
        """Note that a run finished or failed."""
        self.ended += 1
