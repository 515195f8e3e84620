"""The `local` executor: every run in this process, one at a time."""

from __future__ import annotations

from typing import Iterator

from .base import C, Executor, J, Jobs, R, Work


class LocalExecutor(Executor):
    """In this process, one run at a time, sharing the already-loaded base model (no extra model loads)."""

    name = "local"
    remote = False

    def run(self, work: Work, jobs: Jobs, context: C) -> Iterator[tuple[J, R | Exception]]:
        """Jobs are taken one by one, so a job is only created (and marked running) right before it runs."""
        for job, shared in jobs:
            yield job, work(job, shared, context)
