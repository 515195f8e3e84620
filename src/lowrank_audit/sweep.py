"""Drive a planned sweep: load the base once, plan, hand each run to an executor, score and store what it measured.

Per (task, seed): the base observation is computed once (cached); full fine-tuning is handed out first so
that it can serve as the reference; then the base run and every other method. A finished run is skipped on a
re-run; a failed or interrupted one is retried.

Tuning (`tune:` on a method): at the first seed every grid point is a run; once a family's grid has finished, the point
with the best validation score is chosen (tuning.py) and stored, and the other seeds are planned at it. The full
fine-tune's grid is handed out first: the chosen point is the reference every other run is scored against.

One run's step (train, save, observe; score) is `run_step.py`; who runs it is the executor (`executors/`): this
process, sharing the loaded model, a Ray worker, which loads the model itself, or every process of a launch together.
This process (the driver) scores each run against its group's references and alone writes the store and the cache.
A run measured before its group's full fine-tune (with Ray, all run at once) waits here, not in its worker, to be
scored against it.
"""

from __future__ import annotations

import copy
import hashlib
import logging
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch

from .config.spec import ExperimentSpec
from .errors import AuditError
from .evaluate import ObservationCache
from .evaluate.cache import cache_key
from .evaluate.weights import Spectrum, spectra, weight_deltas
from .executors import EXECUTORS, Executor, LaunchedExecutor
from .executors.launched import follow_jobs, leading
from .methods import Method
from .models import LoadedModel, Precision, load_model, model_identity, resolve_precision
from .packing import train_packs
from .plan import BASE, REFERENCE, PlannedRun, experiment_fingerprint, plan_runs, untuned_tasks
from .progress import SweepProgress
from .records import Observation
from .run_step import Measured, References, RunContext, RunJob, attempt_run, failure, follow_run, score_run
from .store import RunRecord, Store
from .records import Selection
from .tuning import choose
from .store.examples import DATA_DIR, save_examples
from .store.lock import OutputLock
from .store.outputs import Pruned, prune_outputs
from .store.sqlite import STORE_FILE
from .tasks import TASKS, Task, task_vocabulary
from .train.launch import launch_state

logger = logging.getLogger(__name__)


@dataclass
class SweepResult:
    out_dir: Path
    planned: int = 0
    finished: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    driver: bool = True
    """False in a launched process other than the main one: it trained with the main process, which wrote the results."""
    pruned: Pruned | None = None
    """What was removed from the output folder once every run had finished (None: nothing, some run did not finish)."""


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
class _Group:
    """The runs of one (task, task options, seed), and, while the sweep runs, what they are scored against."""

    runs: list[PlannedRun]
    refs: References | None = None
    awaiting: set[str] = field(default_factory=set)
    """Its full fine-tune candidates out being run: the others' measurements wait in `waiting` to be scored against the
    chosen one."""
    waiting: list[tuple[RunJob, Measured]] = field(default_factory=list)
    best: tuple[float | None, str, Measured] | None = None
    """The candidate measured in this sweep with the best validation score so far (score, run id, measurement)."""

    @property
    def candidates(self) -> list[PlannedRun]:
        """The runs that may be the group's reference: the full fine-tune's grid when it is tuned, else the group's
        full fine-tune (the first, if a config sweeps several)."""
        full = [r for r in self.runs if r.method == REFERENCE]
        tuned = [r for r in full if r.family is not None and r.family == full[0].family]
        return tuned or full[:1]

    @property
    def others(self) -> list[PlannedRun]:
        """Every run but the reference candidates, the base first."""
        candidates = {r.run_id for r in self.candidates}
        return sorted((r for r in self.runs if r.run_id not in candidates), key=lambda r: r.method != BASE)


class Sweep:
    """The driver of one sweep: it holds the model, the store and the cache; an executor runs the runs."""

    def __init__(self, spec: ExperimentSpec, out_dir: Path, executor: Executor, progress: bool = True,
                 source: str = "config") -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.progress = progress
        self.executor = executor
        self.precision = Precision.resolve(spec.precision)
        self.eval_precision = Precision.resolve(spec.eval_precision)
        self.source = source
        for name in untuned_tasks(spec):
            logger.info(f"task {name} has no validation split to tune on: its tuned methods run at their grid's middle value")
        logger.info(f"loading model ({spec.model.source}) ...")
        self.loaded: LoadedModel = load_model(spec.model, task_vocabulary())
        self.store = Store.in_dir(out_dir)
        try:
            self.store.bind_experiment(*experiment_fingerprint(spec, self.loaded.identity, self.precision.name))
            self._plan()
        except BaseException:
            self.store.close()
            raise
        self.cache = ObservationCache(out_dir / "cache")
        self.context = RunContext(self.loaded, self.eval_precision, spec.budget.eval_batch_size, progress)
        self._base: dict[tuple, Observation] = {}

    def _plan(self) -> None:
        """Plan every run that can be planned now (a tuning family's later seeds once it has a choice), check each
        distinct method on the model and the disk space the pending runs need, and group the runs."""
        choices = {s.family: dict(s.chosen.point) for s in self.store.selections() if s.chosen is not None}
        self.runs = plan_runs(self.spec, self.loaded.identity, self.precision.name, self.source, self.loaded.model, choices)
        self.methods = {r.method_key: r.build_method() for r in self.runs}  # checks and sizes are per distinct method
        for method in self.methods.values():
            method.check(self.loaded.model)
        pending = [r for r in self.runs if self.store.status(r.run_id) != "finished"]
        check_disk_space(self.out_dir, _weights_bytes(pending, self.methods, self.loaded.model))
        self._groups: dict[tuple, _Group] = {}
        self._families: dict[str, list[PlannedRun]] = {}
        for r in self.runs:
            self._groups.setdefault(r.group, _Group([])).runs.append(r)
            if r.family is not None:
                self._families.setdefault(r.family, []).append(r)

    # ------------------------------------------------------------------------------------------------
    def run(self) -> SweepResult:
        """Every pending run, group by group, each group's full fine-tune first (the local executor runs them in that
        order; Ray runs them all at once, and a run measured before its full fine-tune is scored once that is). With
        tuning, a second pass runs the later seeds at the points the first pass chose."""
        result = SweepResult(self.out_dir)
        for family in self._families:  # a sweep killed between a grid's last run and its choice chooses now
            self._choose_if_complete(family)
        self._plan()
        attempted: set[str] = set()
        self._progress = SweepProgress(0)
        later = len(self.spec.seeds) - 1  # each family not chosen yet adds one run per later seed
        expected = later * len(set(self._families) - {s.family for s in self.store.selections()})
        while True:
            pending, new = [], [r for r in self.runs if r.run_id not in attempted]
            unchosen = set(self._families) - {s.family for s in self.store.selections()}
            for group in self._groups.values():
                if unchosen and group.runs[0].seed != self.spec.seeds[0]:
                    new = [r for r in new if r.group != group.runs[0].group]
                    continue  # it waits for its tuned runs, planned once the first seed's grids have chosen
                todo = [r for r in group.runs if r.run_id not in attempted and not self._finished(r)]
                if todo and self._pruned(self._chosen_reference(group)):
                    result.skipped -= 1  # its weights were removed: it is trained again to be these runs' reference
                if todo:
                    pending.append(group)
            result.skipped += sum(self._finished(r) for r in new)
            todo = [r for g in pending for r in g.runs if r.run_id not in attempted and not self._finished(r)]
            self._progress.total = self._progress.started + len(todo) + expected
            expected = 0
            attempted |= {r.run_id for r in new}
            if not pending:
                break
            self._execute(self._jobs(pending), result)
            self._plan()
        result.planned = len(self.runs)
        self.store.record_plan(r.run_id for r in self.runs)
        return result

    def _finished(self, run: PlannedRun) -> bool:
        return self.store.status(run.run_id) == "finished"

    def _pruned(self, run: PlannedRun | None) -> bool:
        """A finished run whose weights folder was removed when an earlier sweep ended (see store/outputs.py)."""
        return run is not None and self._finished(run) and not (self.out_dir / "runs" / run.run_id).is_dir()

    def _jobs(self, groups: list[_Group]) -> Iterator[tuple[RunJob, Observation]]:
        """Per group: the base observation (computed here, cached), the jobs of its full fine-tune candidates that are
        not done, then every other pending run's."""
        for group in groups:
            first = group.runs[0]
            task = self.context.task(first)
            base_obs = self._base_observation(first)
            self._save_training_data(task, base_obs, first)
            group.refs = References(base_obs)
            reference = self._chosen_reference(group)
            if reference is not None and not self._pruned(reference):
                group.refs = References(base_obs, *self._reference_observation(reference, task))
            else:
                todo = [reference] if reference is not None else [r for r in group.candidates if not self._finished(r)]
                group.awaiting = {r.run_id for r in todo}
                for run in todo:
                    yield self._start(self._describe(run, is_reference=True)), base_obs
            others = [self._describe(run) for run in group.others if not self._finished(run)]
            if not self.executor.remote:  # packs train here, then each run's own step only evaluates it
                train_packs(others, base_obs, self.context)
            for job in others:
                yield self._start(job), base_obs

    def _base_observation(self, run: PlannedRun) -> Observation:
        """The base model's observation for the run's group (computed once, then from the cache, kept for the sweep);
        binds the group's task to it."""
        if run.group not in self._base:
            task = self.context.task(run)
            key = cache_key("base", self.loaded.identity, self.eval_precision.name, task.fingerprint())
            self._base[run.group] = self.cache.get_or_compute(
                key, lambda: task.observe_base(self.context.runner, self.loaded.model))
            self.context.task(run, self._base[run.group])
        return self._base[run.group]

    def _chosen_reference(self, group: _Group) -> PlannedRun | None:
        """The group's reference once every candidate has finished or failed: the only candidate, or the chosen grid
        point of a tuned full fine-tune (None: none finished, or some are still to run)."""
        candidates = group.candidates
        if not candidates or any(self.store.status(r.run_id) not in ("finished", "failed") for r in candidates):
            return None
        if candidates[0].family is None:
            return candidates[0] if self._finished(candidates[0]) else None
        selection = self._choose_if_complete(candidates[0].family)
        chosen = selection.chosen.run_id if selection and selection.chosen else None
        return next((r for r in candidates if r.run_id == chosen), None)

    def _choose_if_complete(self, family: str) -> Selection | None:
        """Choose a family's grid point once each of its runs has finished or failed, and store the choice."""
        grid = self._families.get(family, [])
        if not grid or any(self.store.status(r.run_id) not in ("finished", "failed") for r in grid):
            return None
        first = grid[0]
        metric = TASKS.get(first.task).selects_on(first.task_options)
        task, base_obs = self.context.task(first), self._base_observation(first)
        selection = choose(grid, metric, self.methods[first.method_key].rank, self.store.status,
                           lambda run_id: self.store.metric_value(run_id, metric),
                           lambda run_id: task.divergence(base_obs, lambda m: self.store.metric_value(run_id, m)))
        known = {s.family: s for s in self.store.selections()}.get(family)
        if known != selection:
            self.store.record_selection(selection)
            logger.info(self._selection_line(selection))
        return selection

    def _selection_line(self, selection: Selection) -> str:
        label = selection.method + (f" r={selection.rank}" if selection.rank is not None else "")
        scores = ", ".join(f"{_point(c.point)}: " + ("diverged" if c.score is None else f"{c.score:.4f}")
                           + (f" diverged ({c.diverged})" if c.diverged else "") for c in selection.candidates)
        if selection.chosen is None:
            return f"tuning {selection.task} / {label}: every grid point failed ({scores}); its later seeds are not run"
        return (f"tuning {selection.task} / {label}: chose {_point(selection.chosen.point)} by {selection.metric} "
                f"({scores})")

    def _save_training_data(self, task: Task, base_obs: Observation, first: PlannedRun) -> None:
        """The group's fine-tuning data as JSONL in `out_dir/data` (a task that cannot build it fails its runs later)."""
        try:
            examples = task.train_examples(base_obs, first.seed)
        except AuditError:
            return
        options = hashlib.sha256(first.group[1].encode()).hexdigest()[:8]
        path = save_examples(self.out_dir / DATA_DIR / f"{first.task}-{options}-seed{first.seed}.jsonl", examples)
        logger.info(f"fine-tuning data: {path.relative_to(self.out_dir)} ({len(examples)} examples)")

    def _reference_observation(self, run: PlannedRun, task: Task) -> tuple[Observation, dict[str, Spectrum]]:
        """The finished full fine-tune's observation (from the cache, or re-observed) and weight spectra, from its saved weights."""
        model = run.build_method().load(copy.deepcopy(self.loaded.model), self.out_dir / "runs" / run.run_id)
        own_spectra = spectra(weight_deltas(model, self.loaded.model))
        obs = self.cache.get_or_compute(cache_key("run", run.run_id, task.fingerprint()),
                                        lambda: task.observe(self.context.runner, model))
        return obs, own_spectra

    def _describe(self, run: PlannedRun, is_reference: bool = False) -> RunJob:
        """The run's work (its one method object, from planning to scoring)."""
        method = run.build_method()
        label = (f"{run.task} / {run.method}" + (f" r={method.rank}" if method.rank is not None else "")
                 + (f" {_point(dict(run.tuned))}" if run.tuned else "") + f" / seed {run.seed}")
        return RunJob(run, method, label, self.spec, self.precision, self.out_dir, is_reference=is_reference,
                      progress=self.progress and not self.executor.remote, eval_precision=self.eval_precision)

    def _start(self, job: RunJob) -> RunJob:
        """Mark the run as running; the executor takes it from here."""
        run = job.run
        self.store.start_run(RunRecord(run.run_id, run.task, run.method, job.method.rank, run.seed, run.config,
                                       run.family))
        logger.info(f"run {job.label} ({run.run_id}) · {self._progress.begin()}")
        return job

    def _execute(self, jobs: Iterator[tuple[RunJob, Observation]], result: SweepResult) -> None:
        """Hand the jobs to the executor; score and store each measurement as it arrives (only this process writes).

        A run measured while its group's full fine-tune candidates are still out waits here (its observation held by
        the driver, its worker free) and is scored once they are all in, against the chosen one if one succeeded, else
        without it."""
        for job, measured in self.executor.run(attempt_run, jobs, self.context):
            if isinstance(measured, Exception):  # the worker died or the task could not run
                measured = Measured(error=f"{type(measured).__name__}: {measured}")
            group = self._groups[job.run.group]
            if group.awaiting and not job.is_reference and measured.error is None:
                group.waiting.append((job, measured))
                logger.info(f"run {job.label} measured; it is scored and stored once its group's full fine-tune is")
                continue
            scored = self._record(job, measured, group.refs, result)
            if job.is_reference:
                self._reference_arrived(group, job, measured if scored else None, result)

    def _reference_arrived(self, group: _Group, job: RunJob, measured: Measured | None, result: SweepResult) -> None:
        """A full fine-tune candidate is in: once all are, the chosen one becomes the group's reference and the runs
        that waited for it are scored. Of the candidates measured here only the best so far is held."""
        group.awaiting.discard(job.run.run_id)
        if measured is not None:
            score = self._validation_score(job.run)
            if group.best is None or (score is not None and (group.best[0] is None or score < group.best[0])):
                group.best = (score, job.run.run_id, measured)
        if group.awaiting:
            return
        reference = self._chosen_reference(group)
        if reference is not None and group.best is not None and reference.run_id == group.best[1]:
            group.refs = group.refs.with_reference(group.best[2])
        elif reference is not None:
            group.refs = References(group.refs.base, *self._reference_observation(reference, self.context.task(reference)))
        group.best = None
        for waiting in group.waiting:
            self._record(*waiting, group.refs, result)
        group.waiting.clear()

    def _validation_score(self, run: PlannedRun) -> float | None:
        """A tuning run's stored validation score (None for a run that is not a grid point)."""
        if run.family is None:
            return None
        return self.store.metric_value(run.run_id, TASKS.get(run.task).selects_on(run.task_options))

    def _record(self, job: RunJob, measured: Measured, refs: References, result: SweepResult) -> bool:
        """Score a measured run and write it to the store, or record its failure; True if it finished."""
        if measured.error is not None:
            self._fail(job, measured.error, result)
            return False
        task = self.context.task(job.run)
        try:
            rows, extra = score_run(task, measured, refs, job.run.seed, job.is_reference, job.method.rank,
                                    self.spec.analysis)
        except Exception as e:  # a bug in scoring fails this run, not the sweep
            self._fail(job, failure(e), result)
            return False
        if job.is_reference:
            self.cache.put(cache_key("run", job.run.run_id, task.fingerprint()), measured.observation)
        self.store.finish_run(job.run.run_id, rows, **extra)
        self._progress.end()
        result.finished += 1
        if job.run.family is not None:
            self._choose_if_complete(job.run.family)
        return True

    def _fail(self, job: RunJob, error: str, result: SweepResult) -> None:
        self.store.fail_run(job.run.run_id, error)
        self._progress.end()
        result.failed.append((job.run.run_id, error))
        logger.info(f"run {job.label} failed: {error.splitlines()[0]}")
        if job.run.family is not None:
            self._choose_if_complete(job.run.family)


def _point(point: dict) -> str:
    """A grid point as people read it: 'lr=0.001'."""
    return " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in point.items())


def _all_finished(spec: ExperimentSpec, out_dir: Path, source: str) -> SweepResult | None:
    """A re-run whose every run has finished and whose every tuning grid has its choice, answered from the store
    without loading the model or starting an executor; None when there is work. When the runs' sizes are chosen on
    the model (`budget.params`), they cannot be planned before it loads: the plan the last sweep recorded stands in
    (the experiment's fingerprint, which the store checks, covers the spec and the model's identity)."""
    if not (out_dir / STORE_FILE).is_file():
        return None
    identity, precision = model_identity(spec.model, task_vocabulary()), resolve_precision(spec.precision)
    store = Store.in_dir(out_dir)
    try:
        store.bind_experiment(*experiment_fingerprint(spec, identity, precision))
        if spec.budget.params is not None:
            run_ids = store.plan()
            if run_ids is None:
                return None
        else:
            selections = store.selections()
            choices = {s.family: dict(s.chosen.point) for s in selections if s.chosen is not None}
            runs = plan_runs(spec, identity, precision, source, None, choices)
            if {r.family for r in runs if r.family is not None} - {s.family for s in selections}:
                return None
            run_ids = [r.run_id for r in runs]
        if any(store.status(r) != "finished" for r in run_ids):
            return None
    finally:
        store.close()
    return SweepResult(out_dir, planned=len(run_ids), skipped=len(run_ids))


def _executor(spec: ExperimentSpec, processes: int, progress: bool) -> Executor:
    """The sweep's executor; under a launcher the launched one, and a configured executor that runs each run elsewhere
    is refused there."""
    name = spec.execution.executor
    if processes > 1:
        if EXECUTORS.get(name).remote:
            raise AuditError(f"this sweep was launched as {processes} processes that train each run together; "
                             f"executor {name!r} runs each run elsewhere. Use executor local under a launcher, "
                             "or one process with executor ray.")
        name = LaunchedExecutor.name
    return EXECUTORS.get(name)(spec.execution, progress)


def run_sweep(spec: ExperimentSpec, out_dir: str | Path, progress: bool = True, source: str = "config") -> SweepResult:
    """Run (or resume) every run of `spec` into `out_dir`; one process at a time per folder.

    Launched as several processes (accelerate launch, torchrun), all train each run together and the main one is the
    driver: it alone locks the folder, evaluates and writes.
    """
    state = launch_state()
    if not state.is_main_process:
        follow_jobs(follow_run)
        return SweepResult(Path(out_dir), driver=False)
    with leading(state.num_processes):
        check_writable(Path(out_dir))
        with OutputLock(out_dir):
            result = _all_finished(spec, Path(out_dir), source)
            if result is None:
                # Ray is connected to (or started) before the model loads, so that a wrong address fails in seconds,
                # not after minutes of loading and observing the base.
                with _executor(spec, state.num_processes, progress) as executor:
                    sweep = Sweep(spec, Path(out_dir), executor, progress, source)
                    try:
                        result = sweep.run()
                    finally:
                        sweep.store.close()
            if not result.failed:
                result.pruned = prune_outputs(Path(out_dir), spec.execution.keep_full_weights, spec.execution.keep_cache)
            return result
