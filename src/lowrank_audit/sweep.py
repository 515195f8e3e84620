"""Execute a planned sweep: load the base once, train and evaluate each run, write the store.

Per (task, seed): the base observation is computed once (cached); full fine-tuning is handed out first so
that it can serve as the reference; then the base run and every other method. A finished run is skipped on a
re-run; a failed or interrupted one is retried.

What one run measures (`measure_run`: train, save the weights, observe) is a function of picklable inputs
(`RunJob`, the base observation) that returns a picklable `Measured`; who runs it is the executor
(`executors.py`): this process, sharing the loaded model, or a Ray worker, which loads the model itself.
This process (the driver) then scores each run against its group's references (`score_run`) and alone writes
the store and the cache. A run measured before its group's full fine-tune (with Ray, all run at once) waits
here, not in its worker, to be scored against it. Launched as several processes, the others train each run
with the driver (`follow_runs`) and write nothing.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import shutil
import time
import traceback
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .config.spec import ExperimentSpec, ModelSpec
from .errors import AuditError
from .evaluate import ObservationCache, Runner
from .evaluate.cache import cache_key
from .evaluate.general import general_rows
from .evaluate.probe import check_changed
from .evaluate.weights import Spectrum, spectra, weight_deltas, weight_update_rows
from .executors import EXECUTORS, Executor
from .methods import Method, trainable_parameters
from .models import LoadedModel, load_model, resolve_precision
from .plan import BASE, REFERENCE, PlannedRun, experiment_fingerprint, plan_runs
from .records import MetricRow, Observation
from .store import RunRecord, Store
from .store.examples import DATA_DIR, save_examples
from .store.lock import OutputLock
from .tasks import TASKS, Task
from .train import PeakRSS, TrainingDiverged, TrainResult, load_trained, remove_checkpoints, save_trained, train
from .train.launch import announce, follow, launch_state


SHARED_FAILURES = (TrainingDiverged, AuditError)
"""Failures every launched process meets at the same point of a run (same inputs; the loss is averaged over them before
it is checked): a launch records the run as failed and goes on."""


class LaunchBroken(RuntimeError):
    """One of several launched processes failed while they trained a run together, in a way the others cannot know
    of: they would wait for it at their next collective operation until the process group's timeout (hours). The
    process raising it exits, and the launcher then stops the others; the run stays unfinished in the store, so the
    next `run` retries it and keeps every finished run."""

    def __init__(self, message: str) -> None:
        super().__init__(f"{message}. The processes of a launch train each run together and cannot go on without "
                         "one of them, so the launch ends here; re-run the command to resume (finished runs are kept).")


@dataclass
class SweepResult:
    out_dir: Path
    planned: int = 0
    finished: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    driver: bool = True
    """False in a launched process other than the main one: it trained with the main process, which wrote the results."""


def _log_default(msg: str) -> None:
    print(msg, flush=True)


def task_vocabulary() -> list[str]:
    """Words of every registered task, so one tiny model's tokenizer serves all tasks."""
    return sorted({w for _, cls in TASKS for w in cls.vocabulary()})


def check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-test"
        probe.write_bytes(b"0" * 4096)
        probe.unlink()
    except OSError as e:
        raise AuditError(f"output folder {out_dir} is not writable ({e.strerror}). Choose another --out.") from None


def check_disk_space(out_dir: Path, needed_bytes: int) -> None:
    """Refuse to start when the output folder's disk cannot hold the weights the pending runs will save."""
    free = shutil.disk_usage(out_dir).free
    if free < needed_bytes:
        raise AuditError(
            f"output folder {out_dir} has {free / 2**20:,.0f} MB free, but the pending runs will save about "
            f"{needed_bytes / 2**20:,.0f} MB of weights. Free some space or choose another --out.")


def _weights_bytes(runs: list[PlannedRun], methods: dict[tuple[str, str], Method], model: torch.nn.Module) -> int:
    """About what the training runs save: their trainable parameters in the model's dtype, plus 10% and 16 MB."""
    per_param = next(model.parameters()).element_size()
    sizes = {key: m.trainable_count(model) * per_param if m.trains else 0
             for key, m in methods.items() if any(r.method_key == key for r in runs)}
    return int(sum(sizes[r.method_key] for r in runs) * 1.1) + 16 * 2**20


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
    """One run's work as plain picklable values: what a Ray worker receives (with its group's base observation)."""

    run: PlannedRun
    label: str
    spec: ExperimentSpec
    precision: str
    out_dir: Path
    is_reference: bool
    progress: bool

    @property
    def folder(self) -> Path:
        """Where the run's weights go (on a cluster: a filesystem the driver and every worker share)."""
        return self.out_dir / "runs" / self.run.run_id


class RunContext:
    """What the runs in one process share: base model, runner, log, and each group's task (built and bound once)."""

    def __init__(self, loaded: LoadedModel, precision: str, eval_batch_size: int, progress: bool,
                 log: Callable[[str], None] = _log_default) -> None:
        self.loaded = loaded
        self.log = log
        self.runner = Runner(loaded.tokenizer, precision, eval_batch_size, progress)
        self._tasks: dict[tuple, Task] = {}
        self._bound: set[tuple] = set()

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
def _worker_context(model_json: str, precision: str, eval_batch_size: int) -> RunContext:
    """A process without a model (a Ray worker) loads the base once and keeps it for its later runs; it logs to stdout."""
    loaded = load_model(ModelSpec.model_validate_json(model_json), task_vocabulary())
    return RunContext(loaded, precision, eval_batch_size, progress=False)


def _context_for(job: RunJob) -> RunContext:
    """This worker's (or launched process's) loaded base, checked to be the one the driver planned the run on."""
    context = _worker_context(job.spec.model.model_dump_json(), job.precision, job.spec.budget.eval_batch_size)
    if context.loaded.identity != job.run.config["model"]:
        raise AuditError(f"this worker loaded base model {context.loaded.identity}, the sweep planned "
                         f"{job.run.config['model']}; give every node the same model files.")
    return context


def _failure(e: Exception) -> str:
    """How a run's failure is recorded: the message of an expected one, the type and a short traceback of a bug."""
    if isinstance(e, SHARED_FAILURES):
        return str(e)
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
        return Measured(error=_failure(e))


def train_run(job: RunJob, base: Observation, context: RunContext) -> tuple[torch.nn.Module, TrainResult, PeakRSS]:
    """Train the run's method on a copy of the base; under a launcher, every process does this together (and an
    unexpected failure in one of them raises LaunchBroken)."""
    run, method, loaded = job.run, job.run.build_method(), context.loaded
    try:
        task = context.task(run, base)
        torch.manual_seed(run.seed)
        model = method.prepare(copy.deepcopy(loaded.model))
        examples = task.train_examples(base, run.seed)
        with PeakRSS() as mem:
            res = train(model, method, examples, loaded.tokenizer, job.spec.budget, job.precision,
                        run.seed, job.progress, desc=job.label, checkpoint_dir=job.folder / "checkpoint",
                        checkpoint_every=job.spec.execution.checkpoint_every, log=context.log)
    except SHARED_FAILURES:
        raise
    except Exception as e:
        state = launch_state()
        if state.num_processes > 1:
            raise LaunchBroken(f"process {state.process_index} of {state.num_processes} failed while training "
                               f"{job.label}: {type(e).__name__}: {e}") from e
        raise
    return model, res, mem


def trained_model(job: RunJob, base: Observation, context: RunContext) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The run's trained model and what its training measured: trained and saved now, or, when an earlier attempt
    saved it completely but was killed before the store recorded the run, loaded from its folder."""
    method = job.run.build_method()
    record = load_trained(job.folder)
    if record is not None:
        context.log(f"{job.label}: evaluating the weights an interrupted attempt trained ({job.folder})")
        return method.load(copy.deepcopy(context.loaded.model), job.folder), record
    model, res, mem = train_run(job, base, context)
    method.save(model, job.folder)
    record = {"result": asdict(res), "peak_rss_mb": mem.peak_mb, "trainable_params": trainable_parameters(model)}
    save_trained(job.folder, record)
    remove_checkpoints(job.folder / "checkpoint")
    return model, record


def _announced(job: RunJob, base: Observation, context: RunContext | None) -> Measured:
    """`attempt_run` in the main of several launched processes: a run to train is first handed to the others."""
    if job.run.build_method().trains and load_trained(job.folder) is None:
        announce((replace(job, progress=False), base))
    return attempt_run(job, base, context)


def follow_runs(log: Callable[[str], None] = _log_default) -> None:
    """In a launched process other than the main one: train each run the main process announces, together with it.

    Only the main process evaluates and writes. A run that diverges or is refused here does so there too (same inputs,
    averaged loss), and is recorded there; any other failure ends the launch (LaunchBroken).
    """
    for job, base in follow():
        context = _context_for(job)  # another base here would train another model: end the launch (raise)
        try:
            train_run(job, base, context)
        except SHARED_FAILURES as e:
            log(f"process {launch_state().process_index}: run {job.label} failed: {type(e).__name__}: {e}")


def measure_run(job: RunJob, base: Observation, context: RunContext | None) -> Measured:
    """What one run measures: train (if the method trains), save the weights, observe. Never touches the store.

    A method that does not train (the base) has nothing to measure: it is scored on the base observation, so no
    model is loaded for it (a Ray worker, which has no `context`, would otherwise load one for nothing)."""
    if not job.run.build_method().trains:
        return Measured()
    context = context or _context_for(job)
    run, loaded = job.run, context.loaded
    task = context.task(run, base)
    model, record = trained_model(job, base, context)
    res, params = TrainResult(**record["result"]), record["trainable_params"]
    t0 = time.perf_counter()
    obs = task.observe(context.runner, model)
    eval_seconds = time.perf_counter() - t0
    check_changed(obs, base, job.label)
    own_spectra = spectra(weight_deltas(model, loaded.model), loaded.model, job.spec.analysis.intruder_top_k)
    forgetting = general_rows(context.runner, model, loaded.model, run.seed)
    del model
    extra = {"train_seconds": res.seconds, "trainable_params": params, "peak_rss_mb": record["peak_rss_mb"],
             "artifact": str(job.folder.relative_to(job.out_dir))}
    rows = [  # cost: properties of the training itself
        MetricRow("trainable_params", float(params)),
        MetricRow("train_seconds", res.seconds),
        MetricRow("seconds_per_step", res.seconds_per_step),
        MetricRow("tokens_per_second", res.tokens_per_second),
        MetricRow("peak_rss_mb", record["peak_rss_mb"]),
        MetricRow("optimizer_state_bytes", float(res.optimizer_state_bytes)),
        MetricRow("final_loss", res.final_loss),
        MetricRow("eval_seconds", eval_seconds),
    ] + forgetting
    return Measured(obs, own_spectra, rows, extra)


def score_run(job: RunJob, measured: Measured, refs: References, task: Task) -> tuple[list[MetricRow], dict[str, Any]]:
    """A measured run's metric rows and store fields, against its group's references (the full fine-tune's own
    observation is its reference)."""
    obs = refs.base if measured.observation is None else measured.observation
    full = obs if job.is_reference else refs.full
    rows = task.score(obs, refs.base, full, job.run.seed) + measured.rows
    if measured.spectra is not None:
        rows += weight_update_rows(measured.spectra, None if job.is_reference else refs.full_spectra,
                                   job.run.build_method().rank, job.spec.analysis.intruder_epsilon)
    return rows, {**measured.extra, "samples": task.samples(obs)}


@dataclass
class _Group:
    """The runs of one (task, task options, seed), and, while the sweep runs, what they are scored against."""

    runs: list[PlannedRun]
    refs: References | None = None
    awaiting_reference: bool = False
    """Its full fine-tune is out being run: the others' measurements wait in `waiting` to be scored against it."""
    waiting: list[tuple[RunJob, Measured]] = field(default_factory=list)

    @property
    def reference(self) -> PlannedRun | None:
        """The group's full fine-tune (the first, if a config sweeps several)."""
        return next((r for r in self.runs if r.method == REFERENCE), None)

    @property
    def others(self) -> list[PlannedRun]:
        """Every run but the reference, the base first."""
        reference = self.reference
        return sorted((r for r in self.runs if r is not reference), key=lambda r: r.method != BASE)


class Sweep:
    """The driver of one sweep: it holds the model, the store and the cache; an executor runs the runs."""

    def __init__(self, spec: ExperimentSpec, out_dir: Path, executor: Executor, progress: bool = True,
                 log: Callable[[str], None] = _log_default, source: str = "config") -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.progress = progress
        self.log = log
        self.executor = executor
        self.processes = launch_state().num_processes
        self.precision = resolve_precision(spec.precision)
        log(f"loading model ({spec.model.source}) ...")
        self.loaded: LoadedModel = load_model(spec.model, task_vocabulary())
        self.runs = plan_runs(spec, self.loaded.identity, self.precision, source, self.loaded.model)
        methods = {r.method_key: r.build_method() for r in self.runs}  # checks and sizes are per distinct method
        for method in methods.values():
            method.check(self.loaded.model)
        self.store = Store.in_dir(out_dir)
        try:
            self.store.bind_experiment(*experiment_fingerprint(spec, self.loaded.identity, self.precision))
            pending = [r for r in self.runs if self.store.status(r.run_id) != "finished"]
            check_disk_space(out_dir, _weights_bytes(pending, methods, self.loaded.model))
        except BaseException:
            self.store.close()
            raise
        self.cache = ObservationCache(out_dir / "cache")
        self.context = RunContext(self.loaded, self.precision, spec.budget.eval_batch_size, progress, log)
        self._groups: dict[tuple, _Group] = {}
        for r in self.runs:
            self._groups.setdefault(r.group, _Group([])).runs.append(r)

    # ------------------------------------------------------------------------------------------------
    def run(self) -> SweepResult:
        """Every pending run, group by group, each group's full fine-tune first (the local executor runs them in that
        order; Ray runs them all at once, and a run measured before its full fine-tune is scored once that is)."""
        result = SweepResult(self.out_dir, planned=len(self.runs))
        pending = []
        for group in self._groups.values():
            todo = [r for r in group.runs if not self._finished(r)]
            result.skipped += len(group.runs) - len(todo)
            if todo:
                pending.append(group)
        if pending:
            self._execute(self._jobs(pending), result)
        return result

    def _finished(self, run: PlannedRun) -> bool:
        return self.store.status(run.run_id) == "finished"

    def _jobs(self, groups: list[_Group]) -> Iterator[tuple[RunJob, Observation]]:
        """Per group: the base observation (computed here, cached), the full fine-tune's job unless it is done, then
        every other pending run's."""
        for group in groups:
            first = group.runs[0]
            task = self.context.task(first)
            base_key = cache_key("base", self.loaded.identity, self.precision, task.fingerprint())
            base_obs = self.cache.get_or_compute(base_key, lambda: task.observe_base(self.context.runner, self.loaded.model))
            self.context.task(first, base_obs)
            self._save_training_data(task, base_obs, first)
            group.refs, reference = References(base_obs), group.reference
            if reference is not None and self._finished(reference):
                group.refs = References(base_obs, *self._reference_observation(reference, task))
            elif reference is not None:
                group.awaiting_reference = True
                yield self._job(reference, group), base_obs
            for run in group.others:
                if not self._finished(run):
                    yield self._job(run, group), base_obs

    def _save_training_data(self, task: Task, base_obs: Observation, first: PlannedRun) -> None:
        """The group's fine-tuning data as JSONL in `out_dir/data` (a task that cannot build it fails its runs later)."""
        try:
            examples = task.train_examples(base_obs, first.seed)
        except AuditError:
            return
        options = hashlib.sha256(first.group[1].encode()).hexdigest()[:8]
        path = save_examples(self.out_dir / DATA_DIR / f"{first.task}-{options}-seed{first.seed}.jsonl", examples)
        self.log(f"fine-tuning data: {path.relative_to(self.out_dir)} ({len(examples)} examples)")

    def _reference_observation(self, run: PlannedRun, task: Task) -> tuple[Observation, dict[str, Spectrum]]:
        """The finished full fine-tune's observation (from the cache, or re-observed) and weight spectra, from its saved weights."""
        model = run.build_method().load(copy.deepcopy(self.loaded.model), self.out_dir / "runs" / run.run_id)
        own_spectra = spectra(weight_deltas(model, self.loaded.model))
        obs = self.cache.get_or_compute(cache_key("run", run.run_id, task.fingerprint()),
                                        lambda: task.observe(self.context.runner, model))
        return obs, own_spectra

    def _job(self, run: PlannedRun, group: _Group) -> RunJob:
        """Mark the run as running and describe its work; the executor takes it from here."""
        method = run.build_method()
        label = f"{run.task} / {run.method}" + (f" r={method.rank}" if method.rank is not None else "") + f" / seed {run.seed}"
        self.store.start_run(RunRecord(run.run_id, run.task, run.method, method.rank, run.seed, run.config))
        self.log(f"run {label} ({run.run_id})")
        return RunJob(run, label, self.spec, self.precision, self.out_dir, is_reference=run is group.reference,
                      progress=self.progress and not self.executor.remote)

    def _execute(self, jobs: Iterator[tuple[RunJob, Observation]], result: SweepResult) -> None:
        """Hand the jobs to the executor; score and store each measurement as it arrives (only this process writes).

        A run measured while its group's full fine-tune is still out waits here (its observation held by the driver,
        its worker free) and is scored when that arrives, against it if it succeeded, else without it."""
        work = _announced if self.processes > 1 else attempt_run
        for job, measured in self.executor.run(work, jobs, self.context):
            if isinstance(measured, Exception):  # the worker died or the task could not run
                measured = Measured(error=f"{type(measured).__name__}: {measured}")
            group = self._groups[job.run.group]
            if group.awaiting_reference and not job.is_reference and measured.error is None:
                group.waiting.append((job, measured))
                self.log(f"run {job.label} measured; it is scored and stored once its group's full fine-tune is")
                continue
            scored = self._record(job, measured, group.refs, result)
            if job.is_reference:
                if scored:
                    group.refs = group.refs.with_reference(measured)
                group.awaiting_reference = False
                for waiting in group.waiting:
                    self._record(*waiting, group.refs, result)
                group.waiting.clear()

    def _record(self, job: RunJob, measured: Measured, refs: References, result: SweepResult) -> bool:
        """Score a measured run and write it to the store, or record its failure; True if it finished."""
        if measured.error is not None:
            self._fail(job, measured.error, result)
            return False
        task = self.context.task(job.run)
        try:
            rows, extra = score_run(job, measured, refs, task)
        except Exception as e:  # a bug in scoring fails this run, not the sweep
            self._fail(job, _failure(e), result)
            return False
        if job.is_reference:
            self.cache.put(cache_key("run", job.run.run_id, task.fingerprint()), measured.observation)
        self.store.finish_run(job.run.run_id, rows, **extra)
        result.finished += 1
        return True

    def _fail(self, job: RunJob, error: str, result: SweepResult) -> None:
        self.store.fail_run(job.run.run_id, error)
        result.failed.append((job.run.run_id, error))
        self.log(f"run {job.label} failed: {error.splitlines()[0]}")


def _executor(spec: ExperimentSpec, processes: int, progress: bool, log: Callable[[str], None]) -> Executor:
    """The sweep's executor, refused under a launcher if it runs each run elsewhere."""
    executor = EXECUTORS.get(spec.execution.executor)(spec.execution, progress, log)
    if processes > 1 and executor.remote:
        raise AuditError(f"this sweep was launched as {processes} processes that train each run together; "
                         f"executor {executor.name!r} runs each run elsewhere. Use executor local under a launcher, "
                         "or one process with executor ray.")
    return executor


def run_sweep(spec: ExperimentSpec, out_dir: str | Path, progress: bool = True,
              log: Callable[[str], None] = _log_default, source: str = "config") -> SweepResult:
    """Run (or resume) every run of `spec` into `out_dir`; one process at a time per folder.

    Launched as several processes (accelerate launch, torchrun), all train each run together and the main one is the
    driver: it alone locks the folder, evaluates and writes.
    """
    state = launch_state()
    if not state.is_main_process:
        follow_runs(log)
        return SweepResult(Path(out_dir), driver=False)
    broken = False
    try:
        check_writable(Path(out_dir))
        # Ray is connected to (or started) before the model loads, so that a wrong address fails in seconds, not after
        # minutes of loading and observing the base (a finished sweep re-run with Ray starts it for nothing).
        with OutputLock(out_dir), _executor(spec, state.num_processes, progress, log) as executor:
            sweep = Sweep(spec, Path(out_dir), executor, progress, log, source)
            try:
                return sweep.run()
            finally:
                sweep.store.close()
    except LaunchBroken:
        broken = True  # the others may be inside a training step: a broadcast now would wait for them forever
        raise
    finally:
        if state.num_processes > 1 and not broken:
            announce(None)  # done, or failed (e.g. the folder is locked): the other processes stop waiting for runs
