"""What an executor is: it calls `work(job, shared, context)` for every job and yields each job's result as soon as it
is ready; the sweep (the driver) scores it and writes the store.

An executor knows nothing about models or stores. `shared` is what several jobs have in common (their group's base
observation): the Ray executor sends each distinct one to the cluster once. `context` is this process's loaded state
(the base model); a Ray worker has none and gets `None`, so `work` loads what it needs there. A job never waits for
another job: what needs two results (a run scored against its group's full fine-tune) is done by the driver.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Callable, ClassVar, Iterable, Iterator, TypeVar

from ..config.spec import ExecutionSpec

J = TypeVar("J")
S = TypeVar("S")
C = TypeVar("C")
R = TypeVar("R")
Work = Callable[[J, S, C | None], R]
Jobs = Iterable[tuple[J, S]]


class Executor(ABC):
    """Runs jobs and yields (job, result) as each finishes; a result that could not be produced is an exception."""

    name: ClassVar[str]
    remote: ClassVar[bool]
    """True: the work runs in other processes (no per-step progress bars from there)."""

    def __init__(self, execution: ExecutionSpec, progress: bool) -> None:
        self.execution = execution
        self.progress = progress

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc: object) -> None:
        """Release what `__enter__` acquired."""

    @abstractmethod
    def run(self, work: Work, jobs: Jobs, context: C) -> Iterator[tuple[J, R | Exception]]:
        """Call `work` on every job of `jobs`; yield each job with its result as it finishes."""
