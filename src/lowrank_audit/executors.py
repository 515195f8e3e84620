"""Who executes the runs of a sweep: this process, one at a time (`local`), or one Ray task per run (`ray`).

An executor knows nothing about models or stores. It calls `work(job, shared, context)` for every job
and yields each job's result as soon as it is ready; the sweep (the driver) writes the store. `shared`
is what several jobs have in common (their group's reference observations): the Ray executor sends
each distinct one to the cluster once. `context` is this process's loaded state (the base model);
a Ray worker has none and gets `None`, so `work` loads what it needs there.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Iterable, Iterator, TypeVar

from .config.spec import ExecutionSpec
from .registry import Registry

J = TypeVar("J")
S = TypeVar("S")
C = TypeVar("C")
R = TypeVar("R")


class Executor(ABC):
    """Runs jobs and yields (job, result) as each finishes; a result that could not be produced is an exception."""

    name: ClassVar[str]
    concurrent: ClassVar[bool]
    """True: many runs in flight at once (references of all groups, then all other runs); False: one group at a time."""
    remote: ClassVar[bool]
    """True: the work runs in other processes (no per-step progress bars from there)."""

    def __init__(self, execution: ExecutionSpec, progress: bool, log: Callable[[str], None]) -> None:
        self.execution = execution
        self.progress = progress
        self.log = log

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        """Release what `__enter__` acquired."""

    @abstractmethod
    def run(self, work: Callable[[J, S, C | None], R], jobs: Iterable[tuple[J, S]],
            context: C) -> Iterator[tuple[J, R | Exception]]:
        """Call `work` on every (job, shared) of `jobs`; yield each job with its result as it finishes."""


class LocalExecutor(Executor):
    """In this process, one run at a time, sharing the already-loaded base model (no extra model loads)."""

    name = "local"
    concurrent = False
    remote = False

    def run(self, work: Callable[[J, S, C | None], R], jobs: Iterable[tuple[J, S]],
            context: C) -> Iterator[tuple[J, R | Exception]]:
        """Jobs are taken one by one, so a job is only created (and marked running) right before it runs."""
        for job, shared in jobs:
            yield job, work(job, shared, context)


EXECUTORS: Registry[type[Executor]] = Registry("executor")
EXECUTORS.register(LocalExecutor.name, LocalExecutor)
