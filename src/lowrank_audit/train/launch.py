"""Several processes under one launcher (`accelerate launch`, `torchrun`): data-parallel training of each run.

Every process loads the base model and trains every run together (each on its share of every batch, the
gradients averaged by accelerate's DDP wrapper). The main process alone is the driver: it holds the output
lock, plans and evaluates the runs, and writes the store; before each run it hands the run to the others
(`announce`), which train it with it and then wait for the next (`follow`).
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any, Iterator

from accelerate import PartialState
from accelerate.utils import broadcast_object_list, parse_flag_from_env

from ..errors import AuditError

WAIT = timedelta(hours=12)
"""How long a process may wait for the others (e.g. while the main process evaluates a run between two trainings).

torch.distributed's default is 30 minutes, shorter than evaluating a large model; a crashed process still ends the
launch at once, because the launcher stops all processes when one exits, and so does a run that fails in one process
only (it raises sweep.LaunchBroken and exits)."""


def launch_state() -> PartialState:
    """This process's place in the launch (one process when not launched); the process group waits up to `WAIT`."""
    state = PartialState(cpu=parse_flag_from_env("ACCELERATE_USE_CPU"), timeout=WAIT)  # as AcceleratorState reads it
    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and state.num_processes == 1:
        raise AuditError(
            f"the launcher started {launched} processes, but accelerate sees one (no GPU found, and CPU processes "
            "were not requested): on CPUs set ACCELERATE_USE_CPU=1 (accelerate launch --cpu, or "
            "ACCELERATE_USE_CPU=1 torchrun ...), or launch a single process.")
    return state


def announce(item: Any) -> None:
    """The main process hands `item` (a run to train, or None: the sweep is over) to the other processes."""
    broadcast_object_list([item])


def follow() -> Iterator[Any]:
    """In a process other than the main one: every item the main process announces, until it announces None."""
    while True:
        (item,) = broadcast_object_list([None])
        if item is None:
            return
        yield item
