"""Before a group's runs are measured one by one: train its pending packable runs as packs (train/packed.py) into
their folders, so that each run's own step (`run_step.trained_model`) finds its saved weights and only evaluates them,
exactly as it does for weights an interrupted attempt saved.

Packs form per (target_modules): LoRA runs of one group share the base, task, seed and budget; ranks, learning rates,
scales and weight decay may differ. A run that diverges in a pack is failed by its own step with the pack's error; a
pack that fails for another reason leaves its runs to train one at a time. A packed run's `train_seconds` is its share
of the pack's time and its `peak_rss_mb` the pack's. Packs train in the driver's process: not with Ray (each run is a
task of its own there), not under a launcher, not with checkpoints (a killed pack trains again from its first step).
"""

from __future__ import annotations

import json
import logging
from typing import Sequence

from .records import Observation
from .run_step import RunContext, RunJob, trained_record
from .train import PeakRSS, load_trained, save_trained
from .train.launch import launch_state
from .train.packed import PackMember, train_pack

logger = logging.getLogger(__name__)


def packs(jobs: Sequence[RunJob]) -> list[list[RunJob]]:
    """The jobs to train as packs: pending packable runs with the same target_modules, at most `pack_size` each, only
    when packing is on, in one process without checkpoints (a pack does not write any), two runs or more."""
    if not jobs:
        return []
    execution = jobs[0].spec.execution
    if not execution.pack or execution.checkpoint_every or launch_state().num_processes > 1:
        return []
    by_key: dict[str, list[RunJob]] = {}
    for job in jobs:
        if job.method.packable and load_trained(job.folder) is None:
            by_key.setdefault(json.dumps(job.method.options.target_modules), []).append(job)
    size = execution.pack_size
    chunks = [group[i:i + size] for group in by_key.values() for i in range(0, len(group), size)]
    return [chunk for chunk in chunks if len(chunk) > 1]


def train_packs(jobs: Sequence[RunJob], base: Observation, context: RunContext) -> None:
    """Train the packs among `jobs` (the pending runs of one group) and save each run into its folder."""
    for pack in packs(jobs):
        labels = ", ".join(job.label for job in pack)
        logger.info(f"training {len(pack)} runs as one pack: {labels}")
        try:
            _train(pack, base, context)
        except Exception as e:  # the runs train one at a time instead, and fail there if they must
            logger.info(f"the pack failed ({type(e).__name__}: {e}); its runs train one at a time")


def _train(pack: list[RunJob], base: Observation, context: RunContext) -> None:
    first = pack[0]
    task = context.task(first.run, base)
    members = [PackMember(job.method, task.train_examples(base, job.run.seed), job.run.seed, job.label) for job in pack]
    with PeakRSS() as mem:
        outcomes = train_pack(context.loaded.model, members, context.loaded.tokenizer, first.spec.budget,
                              first.precision, first.progress)
    for job, outcome in zip(pack, outcomes):
        if outcome.error is not None:
            context.pack_failures[job.run.run_id] = outcome.error
            continue
        job.folder.mkdir(parents=True, exist_ok=True)
        job.method.save(outcome.model, job.folder)
        save_trained(job.folder, {**trained_record(outcome.result, mem.peak_mb, outcome.model), "pack": len(pack)})
