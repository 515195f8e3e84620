"""Execute a planned sweep: load the base once, train and evaluate each run, write the store.

Per (task, seed): the base observation is computed once (cached); full fine-tuning runs first so that
it can serve as the reference; then the base run and every other method. A finished run is skipped on
a re-run; a failed or interrupted one is retried.
"""

from __future__ import annotations

import copy
import hashlib
import shutil
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from .config.spec import ExperimentSpec
from .errors import AuditError
from .evaluate import ObservationCache, Runner
from .evaluate.cache import cache_key
from .evaluate.probe import check_changed
from .evaluate.weights import Spectrum, spectra, weight_deltas, weight_update_rows
from .methods import trainable_parameters
from .models import LoadedModel, load_model, resolve_precision
from .plan import BASE, REFERENCE, PlannedRun, experiment_fingerprint, plan_runs
from .store import MetricRow, RunRecord, Store
from .store.examples import DATA_DIR, save_examples
from .store.lock import OutputLock
from .tasks import TASKS, Observation, Task
from .train import PeakRSS, TrainingDiverged, remove_checkpoints, train


@dataclass
class SweepResult:
    out_dir: Path
    planned: int = 0
    finished: int = 0
    skipped: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)


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


def _weights_bytes(runs: list[PlannedRun], model: torch.nn.Module) -> int:
    """About what the training runs save: their trainable parameters in the model's dtype, plus 10% and 16 MB."""
    per_param = next(model.parameters()).element_size()
    same_method: dict[tuple[str, str], list[PlannedRun]] = {}
    for r in runs:
        same_method.setdefault((r.method, r.method_options.model_dump_json()), []).append(r)
    total = 0
    for group in same_method.values():
        method = group[0].build_method()
        if method.trains:
            total += method.trainable_count(model) * per_param * len(group)
    return int(total * 1.1) + 16 * 2**20


class Sweep:
    """The state shared by the runs of one sweep: model, store, cache, runner."""

    def __init__(self, spec: ExperimentSpec, out_dir: Path, progress: bool = True,
                 log: Callable[[str], None] = _log_default, source: str = "config") -> None:
        self.spec = spec
        self.out_dir = out_dir
        self.progress = progress
        self.log = log
        self.precision = resolve_precision(spec.precision)
        log(f"loading model ({spec.model.source}) ...")
        self.loaded: LoadedModel = load_model(spec.model, task_vocabulary())
        self.runs = plan_runs(spec, self.loaded.identity, self.precision, source, self.loaded.model)
        for run in {(r.method, r.method_options.model_dump_json()): r for r in self.runs}.values():
            run.build_method().check(self.loaded.model)
        self.store = Store.in_dir(out_dir)
        try:
            self.store.bind_experiment(*experiment_fingerprint(spec, self.loaded.identity, self.precision))
            pending = [r for r in self.runs if self.store.status(r.run_id) != "finished"]
            check_disk_space(out_dir, _weights_bytes(pending, self.loaded.model))
        except BaseException:
            self.store.close()
            raise
        self.cache = ObservationCache(out_dir / "cache")
        self.runner = Runner(self.loaded.tokenizer, self.precision, spec.budget.eval_batch_size, progress)
        self.reference_spectra: dict[str, Spectrum] | None = None

    # ------------------------------------------------------------------------------------------------
    def run(self) -> SweepResult:
        result = SweepResult(self.out_dir, planned=len(self.runs))
        groups: dict[tuple, list[PlannedRun]] = {}
        for r in self.runs:
            groups.setdefault(r.group, []).append(r)
        for runs in groups.values():
            pending = [r for r in runs if self.store.status(r.run_id) != "finished"]
            result.skipped += len(runs) - len(pending)
            if pending:
                self._run_group(runs, result)
        return result

    def _run_group(self, runs: list[PlannedRun], result: SweepResult) -> None:
        first = runs[0]
        task = TASKS.get(first.task)(first.task_options, self.loaded.tokenizer)
        base_key = cache_key("base", self.loaded.identity, self.precision, task.fingerprint())
        base_obs = self.cache.get_or_compute(base_key, lambda: task.observe_base(self.runner, self.loaded.model))
        task.bind(base_obs)
        self._save_training_data(task, base_obs, first)
        order = sorted(runs, key=lambda r: (r.method != REFERENCE, r.method != BASE))
        full_obs: Observation | None = None
        self.reference_spectra = None
        for run in order:
            is_reference = run.method == REFERENCE and full_obs is None
            if self.store.status(run.run_id) == "finished":
                if is_reference:
                    full_obs = self._reference_observation(run, task)
                continue
            obs = self._execute(run, task, base_obs, full_obs, is_reference, result)
            if is_reference and obs is not None:
                full_obs = obs

    def _save_training_data(self, task: Task, base_obs: Observation, first: PlannedRun) -> None:
        """The group's fine-tuning data as JSONL in `out_dir/data` (a task that cannot build it fails its runs later)."""
        try:
            examples = task.train_examples(base_obs, first.seed)
        except AuditError:
            return
        options = hashlib.sha256(first.group[1].encode()).hexdigest()[:8]
        path = save_examples(self.out_dir / DATA_DIR / f"{first.task}-{options}-seed{first.seed}.jsonl", examples)
        self.log(f"fine-tuning data: {path.relative_to(self.out_dir)} ({len(examples)} examples)")

    def _reference_observation(self, run: PlannedRun, task: Task) -> Observation:
        """The finished full fine-tune's observation: from the cache, or re-observed from its saved weights."""
        model = run.build_method().load(copy.deepcopy(self.loaded.model), self.out_dir / "runs" / run.run_id)
        self.reference_spectra = spectra(weight_deltas(model, self.loaded.model))
        return self.cache.get_or_compute(cache_key("run", run.run_id, task.fingerprint()),
                                         lambda: task.observe(self.runner, model))

    def _execute(self, run: PlannedRun, task: Task, base_obs: Observation, full_obs: Observation | None,
                 is_reference: bool, result: SweepResult) -> Observation | None:
        method = run.build_method()
        label = f"{run.task} / {run.method}" + (f" r={method.rank}" if method.rank is not None else "") + f" / seed {run.seed}"
        self.store.start_run(RunRecord(run.run_id, run.task, run.method, method.rank, run.seed, run.config))
        self.log(f"run {label} ({run.run_id})")
        try:
            rows, extra, obs = self._train_and_score(run, method, task, base_obs, full_obs, is_reference, label)
        except (TrainingDiverged, AuditError) as e:
            self._fail(run, label, str(e), result)
            return None
        except Exception as e:  # a bug in one run must not lose the sweep: record it, go on, exit non-zero
            self._fail(run, label, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}", result)
            return None
        self.store.finish_run(run.run_id, rows, **extra)
        result.finished += 1
        return obs

    def _fail(self, run: PlannedRun, label: str, error: str, result: SweepResult) -> None:
        self.store.fail_run(run.run_id, error)
        result.failed.append((run.run_id, error))
        self.log(f"run {label} failed: {error.splitlines()[0]}")

    def _train_and_score(self, run: PlannedRun, method, task: Task, base_obs: Observation,
                         full_obs: Observation | None, is_reference: bool, label: str):
        extra: dict = {}
        run_rows: list[MetricRow] = []  # cost and weight-update geometry: properties of the training itself
        if not method.trains:
            obs = base_obs
        else:
            torch.manual_seed(run.seed)
            model = method.prepare(copy.deepcopy(self.loaded.model))
            examples = task.train_examples(base_obs, run.seed)
            folder = self.out_dir / "runs" / run.run_id
            with PeakRSS() as mem:
                res = train(model, method, examples, self.loaded.tokenizer, self.spec.budget, self.precision,
                            run.seed, self.progress, desc=label, checkpoint_dir=folder / "checkpoint",
                            checkpoint_every=self.spec.execution.checkpoint_every, log=self.log)
            method.save(model, folder)
            remove_checkpoints(folder / "checkpoint")
            t0 = time.perf_counter()
            obs = task.observe(self.runner, model)
            eval_seconds = time.perf_counter() - t0
            check_changed(obs, base_obs, label)
            own_spectra = spectra(weight_deltas(model, self.loaded.model))
            if is_reference:
                self.cache.put(cache_key("run", run.run_id, task.fingerprint()), obs)
                self.reference_spectra = own_spectra
            weight_rows = weight_update_rows(own_spectra, None if is_reference else self.reference_spectra, method.rank)
            params = trainable_parameters(model)
            extra = {"train_seconds": res.seconds, "trainable_params": params, "peak_rss_mb": mem.peak_mb,
                     "artifact": str(folder.relative_to(self.out_dir))}
            run_rows = [
                MetricRow("trainable_params", float(params)),
                MetricRow("train_seconds", res.seconds),
                MetricRow("seconds_per_step", res.seconds_per_step),
                MetricRow("tokens_per_second", res.tokens_per_second),
                MetricRow("peak_rss_mb", mem.peak_mb),
                MetricRow("optimizer_state_bytes", float(res.optimizer_state_bytes)),
                MetricRow("final_loss", res.final_loss),
                MetricRow("eval_seconds", eval_seconds),
            ] + weight_rows
            del model
        reference = obs if is_reference else full_obs
        extra["samples"] = task.samples(obs)
        return task.score(obs, base_obs, reference, run.seed) + run_rows, extra, obs


def run_sweep(spec: ExperimentSpec, out_dir: str | Path, progress: bool = True,
              log: Callable[[str], None] = _log_default, source: str = "config") -> SweepResult:
    """Run (or resume) every run of `spec` into `out_dir`; one process at a time per folder."""
    check_writable(Path(out_dir))
    with OutputLock(out_dir):
        sweep = Sweep(spec, Path(out_dir), progress, log, source)
        try:
            return sweep.run()
        finally:
            sweep.store.close()
