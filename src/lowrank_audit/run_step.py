"""One run's step, the same for `sweep` and `audit`: measure (train, save, observe), check that the model changed the
base's outputs, score against the group's references, record.

What a sweep's run measures (`measure_run`) is a function of picklable inputs (`RunJob`, the base observation) that
returns a picklable `Measured`, so that any executor can run it: this process, sharing the loaded model, or a Ray
worker, which loads the model itself. Scoring (`score_run`) needs the group's references and happens in the driver,
which alone writes the store.
"""

from __future__ import annotations

import copy
import errno
import functools
import logging
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .config.spec import AnalysisSpec, ExperimentSpec, ModelSpec
from .errors import AuditError
from .evaluate import Runner
from .evaluate.general import general_rows
from .evaluate.probe import check_changed
from .evaluate.weights import Spectrum, spectra, weight_deltas, weight_update_rows
from .executors import LaunchBroken
from .methods import Method, trainable_parameters
from .models import FP32, LoadedModel, Precision, load_model
from .plan import PlannedRun
from .records import MetricRow, Observation
from .tasks import TASKS, Task, task_vocabulary
from .train import PeakRSS, TrainingDiverged, TrainResult, load_trained, remove_checkpoints, save_trained, train
from .train.launch import launch_state

SHARED_FAILURES = (TrainingDiverged, AuditError)
"""Failures every launched process meets at the same point of a run (same inputs; the loss is averaged over them before
it is checked): a launch records the run as failed and goes on."""

logger = logging.getLogger(__name__)


@dataclass
class Measured:
    """What a run's work hands back to the driver: its observation (None: the base's own, for a method that does not
    train), its weight-update spectra, its cost rows and store fields; or why it failed."""

    observation: Observation | None = None
    spectra: dict[str, Spectrum] | None = None
    rows: list[MetricRow] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass(frozen=True)
class References:
    """What the runs of one group are scored against: the base's observation, and the full fine-tune's once it exists."""

    base: Observation
    full: Observation | None = None
    full_spectra: dict[str, Spectrum] | None = None

    def with_reference(self, measured: Measured) -> "References":
        """These references plus the full fine-tune's measurement; unchanged if that run failed (then nothing is scored
        against a full fine-tune, as when a group has none)."""
        if measured.error is not None:
            return self
        return References(self.base, measured.observation, measured.spectra)


@dataclass(frozen=True)
class RunJob:
    """One run's work as plain picklable values: what a Ray worker receives (with its group's base observation).

    `method` is built once per run, by the driver, and serves the whole run (prepare, train, save or load, score):
    a method may keep state from `prepare` that `save` needs (PiSSA's initial adapter)."""

    run: PlannedRun
    method: Method
    label: str
    spec: ExperimentSpec
    precision: Precision
    out_dir: Path
    is_reference: bool
    progress: bool
    eval_precision: Precision = FP32
    """The precision of its evaluation forward passes (`precision` is its training's)."""

    @property
    def folder(self) -> Path:
        """Where the run's weights go (on a cluster: a filesystem the driver and every worker share)."""
        return self.out_dir / "runs" / self.run.run_id

    def for_followers(self) -> "RunJob | None":
        """What the other processes of a launch do with this run: train it with this one (without progress bars);
        None when there is nothing to train (the base, or weights an interrupted attempt saved)."""
        if self.method.trains and load_trained(self.folder) is None:
            return replace(self, progress=False)
        return None


class RunContext:
    """What the runs in one process share: base model, runner (at the evaluation precision), and each group's task
    (built and bound once)."""

    def __init__(self, loaded: LoadedModel, precision: Precision, eval_batch_size: int, progress: bool) -> None:
        self.loaded = loaded
        self.runner = Runner(loaded.tokenizer, precision, eval_batch_size, progress)
        self._tasks: dict[tuple, Task] = {}
        self._bound: set[tuple] = set()
        self.pack_failures: dict[str, Exception] = {}
        """Run id -> why it failed while training in a pack (packing.py); its measurement raises it."""

    def task(self, run: PlannedRun, base: Observation | None = None) -> Task:
        """The task of `run`'s group; bound to the base observation `base` the first time one is given."""
        if run.group not in self._tasks:
            self._tasks[run.group] = TASKS.get(run.task)(run.task_options, self.loaded.tokenizer)
        task = self._tasks[run.group]
        if base is not None and run.group not in self._bound:
            task.bind(base)
            self._bound.add(run.group)
        return task


@functools.cache
def _worker_context(model_json: str, precision: Precision, eval_batch_size: int) -> RunContext:
    """A process without a model (a Ray worker) loads the base once and keeps it for its later runs."""
    loaded = load_model(ModelSpec.model_validate_json(model_json), task_vocabulary())
    return RunContext(loaded, precision, eval_batch_size, progress=False)


def _context_for(job: RunJob) -> RunContext:
    """This worker's (or launched process's) loaded base, checked to be the one the driver planned the run on."""
    context = _worker_context(job.spec.model.model_dump_json(), job.eval_precision, job.spec.budget.eval_batch_size)
    if context.loaded.identity != job.run.config["model"]:
        raise AuditError(f"this worker loaded base model {context.loaded.identity}, the sweep planned "
                         f"{job.run.config['model']}; give every node the same model files.")
    return context


def failure(e: Exception) -> str:
    """How a run's failure is recorded: the message of an expected one, the type and a short traceback of a bug."""
    if isinstance(e, SHARED_FAILURES):
        return str(e)
    if "No space left on device" in str(e) or getattr(e, "errno", None) == errno.ENOSPC:
        return f"no space left on device ({type(e).__name__}: {e}); free some space and re-run the same command to resume"
    return f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"


def attempt_run(job: RunJob, base: Observation, context: RunContext | None = None) -> Measured:
    """One run's measurement in this process (in a worker if `context` is None); its failure becomes a failed one.

    A bug in one run must not lose the sweep: it is recorded, the others go on, the command exits non-zero. Only a
    launch whose processes can no longer train together (LaunchBroken) ends the sweep.
    """
    try:
        return measure_run(job, base, context)
    except LaunchBroken:
        raise
    except Exception as e:
        return Measured(error=failure(e))


def train_run(job: RunJob, base: Observation, context: RunContext) -> tuple[nn.Module, TrainResult, PeakRSS]:
    """Train the run's method on a copy of the base; under a launcher, every process does this together (and an
    unexpected failure in one of them raises LaunchBroken)."""
    run, method, loaded = job.run, job.method, context.loaded
    try:
        task = context.task(run, base)
        torch.manual_seed(run.seed)
        model = method.prepare(copy.deepcopy(loaded.model))
        examples = task.train_examples(base, run.seed)
        with PeakRSS() as mem:
            res = train(model, method, examples, loaded.tokenizer, job.spec.budget, job.precision,
                        run.seed, job.progress, desc=job.label, checkpoint_dir=job.folder / "checkpoint",
                        checkpoint_every=job.spec.execution.checkpoint_every)
    except SHARED_FAILURES:
        raise
    except Exception as e:
        state = launch_state()
        if state.num_processes > 1:
            raise LaunchBroken(f"process {state.process_index} of {state.num_processes} failed while training "
                               f"{job.label}: {type(e).__name__}: {e}") from e
        raise
    return model, res, mem


def follow_run(job: RunJob, base: Observation) -> None:
    """In a launched process other than the main one: train the run the main process announced, together with it.

    A run that diverges or is refused here does so there too (same inputs, averaged loss), and is recorded there; any
    other failure ends the launch (LaunchBroken), and so does another base model here (it would train another model).
    """
    context = _context_for(job)
    try:
        train_run(job, base, context)
    except SHARED_FAILURES as e:
        logger.info(f"process {launch_state().process_index}: run {job.label} failed: {type(e).__name__}: {e}")


def trained_model(job: RunJob, base: Observation, context: RunContext) -> tuple[nn.Module, dict[str, Any]]:
    """The run's trained model and what its training measured: trained and saved now, or, when an earlier attempt
    saved it completely but was killed before the store recorded the run, loaded from its folder."""
    failed = context.pack_failures.pop(job.run.run_id, None)
    if failed is not None:
        raise failed
    record = load_trained(job.folder)
    if record is not None:
        how = f"it trained in a pack of {record['pack']}" if "pack" in record else "an interrupted attempt trained"
        logger.info(f"{job.label}: evaluating the weights {how} ({job.folder})")
        return job.method.load(copy.deepcopy(context.loaded.model), job.folder), record
    model, res, mem = train_run(job, base, context)
    job.method.save(model, job.folder)
    record = trained_record(res, mem.peak_mb, model)
    save_trained(job.folder, record)
    remove_checkpoints(job.folder / "checkpoint")
    return model, record


def trained_record(res: TrainResult, peak_rss_mb: float, model: nn.Module) -> dict[str, Any]:
    """What a run's folder keeps of its training (train/checkpoint.py's `save_trained`), for `measure_run`."""
    return {"result": asdict(res), "peak_rss_mb": peak_rss_mb, "trainable_params": trainable_parameters(model)}


def measure_model(model: nn.Module, base: nn.Module, base_obs: Observation, label: str,
                  observe: Callable[[nn.Module], Observation], runner: Runner, analysis: AnalysisSpec,
                  seed: int) -> tuple[Measured, float]:
    """A trained or loaded model's observation (and the seconds it took), checked to differ from the base's; its
    weight-update spectra (with intruder cosines) against `base`; and its forgetting on general text."""
    t0 = time.perf_counter()
    obs = observe(model)
    seconds = time.perf_counter() - t0
    check_changed(obs, base_obs, label)
    own_spectra = spectra(weight_deltas(model, base), base, analysis.intruder_top_k)
    return Measured(obs, own_spectra, general_rows(runner, model, base, seed)), seconds


def measure_run(job: RunJob, base: Observation, context: RunContext | None) -> Measured:
    """What one run measures: train (if the method trains), save the weights, observe. Never touches the store.

    A method that does not train (the base) has nothing to measure: it is scored on the base observation, so no
    model is loaded for it (a Ray worker, which has no `context`, would otherwise load one for nothing)."""
    if not job.method.trains:
        return Measured()
    context = context or _context_for(job)
    task = context.task(job.run, base)
    model, record = trained_model(job, base, context)
    res, params = TrainResult(**record["result"]), record["trainable_params"]
    measured, eval_seconds = measure_model(model, context.loaded.model, base, job.label,
                                           lambda m: task.observe(context.runner, m), context.runner,
                                           job.spec.analysis, job.run.seed)
    del model
    extra = {"artifact": str(job.folder.relative_to(job.out_dir))}
    rows = [  # cost: properties of the training itself
        MetricRow("trainable_params", float(params)),
        MetricRow("train_seconds", res.seconds),
        MetricRow("seconds_per_step", res.seconds_per_step),
        MetricRow("tokens_per_second", res.tokens_per_second),
        MetricRow("peak_rss_mb", record["peak_rss_mb"]),
        MetricRow("optimizer_state_bytes", float(res.optimizer_state_bytes)),
        MetricRow("final_loss", res.final_loss),
        MetricRow("eval_seconds", eval_seconds),
    ]
    return replace(measured, rows=rows + measured.rows, extra=extra)


def score_run(task: Task, measured: Measured, refs: References, seed: int, is_reference: bool,
              rank: int | None, analysis: AnalysisSpec) -> tuple[list[MetricRow], dict[str, Any]]:
    """A measured run's metric rows and store fields, against its group's references (the full fine-tune's own
    observation is its reference; a run without an observation is the base)."""
    obs = refs.base if measured.observation is None else measured.observation
    full = obs if is_reference else refs.full
    rows = task.score(obs, refs.base, full, seed) + measured.rows
    if measured.observation is None:  # the base run: it also carries what the task's data are like at this seed
        rows += task.data_rows(refs.base, seed)
    if measured.spectra is not None:
        rows += weight_update_rows(measured.spectra, None if is_reference else refs.full_spectra, rank,
                                   analysis.intruder_epsilon)
    return rows, {**measured.extra, "samples": task.samples(obs)}
