"""Set up every Ray worker of tests/test_executors.py: log what the worker does, and register a method that fails.

Ray runs `setup` in each worker process before any task (runtime_env `worker_process_setup_hook`).
The log (one line per event: kind, pid, detail) is how the test sees inside the workers.
"""

from __future__ import annotations

import os
import sqlite3
import time

from lowrank_audit.methods import METHODS
from lowrank_audit.methods.full import FullFineTuning

LOG_VARIABLE = "LOWRANK_AUDIT_TEST_WORKER_LOG"


class Explodes(FullFineTuning):
    """A method that raises when training starts: a bug in one run (its size can still be counted before)."""

    name = "explodes"
    description = "raises when its optimizer is built (tests only)"

    def optimizer(self, model):
        raise RuntimeError("boom in optimizer")


def record(kind: str, detail: str = "") -> None:
    with open(os.environ[LOG_VARIABLE], "a") as f:
        f.write(f"{kind} {os.getpid()} {detail}\n")


def setup() -> None:
    """Record every sqlite3.connect and every computed run of this worker; know the failing method; hold a sweep's full
    fine-tune back until its LoRA run is measured, so that the driver gets them in that order."""
    from lowrank_audit import run_step

    real_connect, real_measure = sqlite3.connect, run_step.measure_run

    def connect(database, *args, **kwargs):
        record("sqlite", str(database))
        return real_connect(database, *args, **kwargs)

    def measure_run(job, base, context):
        record("run", job.run.run_id)
        lora_measured = job.out_dir / "lora-measured"
        if job.is_reference:
            for _ in range(600):  # at most 60 s; a test then sees no "waited" event
                if lora_measured.exists():
                    record("waited", job.run.run_id)
                    break
                time.sleep(0.1)
        measured = real_measure(job, base, context)
        if job.run.method == "lora":
            lora_measured.touch()
        return measured

    sqlite3.connect = connect
    run_step.measure_run = measure_run
    if Explodes.name not in METHODS:
        METHODS.register(Explodes.name, Explodes)
    record("worker")


def read_log(path) -> list[tuple[str, int, str]]:
    """(kind, pid, detail) per recorded event."""
    if not os.path.exists(path):
        return []
    out = []
    for line in open(path).read().splitlines():
        kind, pid, detail = (line.split(" ", 2) + [""])[:3]
        out.append((kind, int(pid), detail))
    return out
