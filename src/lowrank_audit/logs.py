"""The tool's own lines (a run started, failed, was resumed, ...): records of the `lowrank_audit` logger, each module
logging under it (`logging.getLogger(__name__)`). Whoever shows them sets one handler (`show_lines`): the command line
prints each line as it is, and so does a Ray worker, whose printed lines Ray forwards to the driver."""

from __future__ import annotations

import contextlib
import logging
from typing import Callable, Iterator

LOGGER = "lowrank_audit"


def print_line(message: str) -> None:
    """A line on stdout, at once (a worker's or a launched process's lines interleave with the driver's)."""
    print(message, flush=True)


class _Lines(logging.Handler):
    """Each record's message through `write`, as it is: no level, logger name or time."""

    def __init__(self, write: Callable[[str], None]) -> None:
        super().__init__()
        self.write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.write(record.getMessage())
        except Exception:
            self.handleError(record)


@contextlib.contextmanager
def show_lines(write: Callable[[str], None] = print_line) -> Iterator[None]:
    """While active, the tool's lines (info and above) go to `write` and only there (not to handlers the root logger
    may have: each line once), whatever level the libraries' loggers are at (`noise.quiet_libraries` raises the root
    logger's); afterwards the logger is as it was."""
    logger = logging.getLogger(LOGGER)
    handler, level, propagate = _Lines(write), logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
        logger.propagate = propagate
