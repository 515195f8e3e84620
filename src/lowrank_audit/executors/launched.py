"""The `launched` executor: several processes under one launcher (`accelerate launch`, `torchrun`) train each run
together (data parallel) and the main process alone is the driver.

Before a job whose work every process shares (training a run), the main process hands it to the others (`announce`);
they do that work with it and wait for the next (`follow_jobs`); then the main process alone finishes the job
(evaluates it) and writes. A job says what the others must do with `for_followers()` (None: nothing, e.g. a run
whose weights are already saved). Chosen by the sweep whenever it was launched as several processes.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator

from ..train.launch import announce, follow
from .base import C, Executor, J, Jobs, R, S, Work


class LaunchBroken(RuntimeError):
    """One of several launched processes failed while they trained a run together, in a way the others cannot know
    of: they would wait for it at their next collective operation until the process group's timeout (hours). The
    process raising it exits, and the launcher then stops the others; the run stays unfinished in the store, so the
    next `run` retries it and keeps every finished run."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}. The processes of a launch train each run together and cannot go on without "
                         "one of them, so the launch ends here; re-run the command to resume (finished runs are kept).")


class LaunchedExecutor(Executor):
    """The main process of a launch: each job here, in order, after handing its shared work to the other processes."""

    name = "launched"
    remote = False

    def run(self, work: Work, jobs: Jobs, context: C) -> Iterator[tuple[J, R | Exception]]:
        """Jobs one by one, as the local executor takes them; the others get each one's shared work first."""
        for job, shared in jobs:
            handover = job.for_followers()
            if handover is not None:
                announce((handover, shared))
            yield job, work(job, shared, context)


@contextmanager
def leading(processes: int) -> Iterator[None]:
    """The main process's side of a launch of `processes`: however the sweep ends (done, or refused, e.g. a locked
    folder), the others are told to stop waiting for jobs; unless it ends with LaunchBroken, when they may be inside
    a training step and a broadcast would wait for them forever (the launcher stops them instead)."""
    try:
        yield
    except LaunchBroken:
        raise
    except BaseException:
        if processes > 1:
            announce(None)
        raise
    else:
        if processes > 1:
            announce(None)


def follow_jobs(work: Callable[[J, S], None]) -> None:
    """In a launched process other than the main one: `work` on every job the main process announces, until it is
    done."""
    for job, shared in follow():
        work(job, shared)
