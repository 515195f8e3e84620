"""`audit`: evaluate adapters trained elsewhere (standard PEFT folders) and an optional full fine-tune
reference with every metric of a task, into the same store and report as `run`.

Each adapter is read first (refused when damaged or zero, flagged when made for another base) and identified by its
name, method with variant and real rank. The base model is loaded once, and only when something is new; each adapter
is attached to a copy, checked to change its outputs, measured once (kept in the cache) and scored against the base
and the reference. A reference given later re-scores the stored adapters from their kept measurements.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import BaseModel, ConfigDict
from torch import nn

from .config.load import validate_options
from .config.spec import AnalysisSpec, ModelSpec
from .errors import AuditError
from .evaluate import ObservationCache, Runner
from .evaluate.cache import cache_key
from .methods.full import FullFineTuning
from .methods.full_card import FullOptions
from .adapter_identity import REDUCED
from .audit_base import KnownModel
from .audit_cache import MeasuredCache
from .audit_inputs import (ADAPTER_WEIGHTS, AdapterInfo, adapter_names, check_safetensors, digest, inspect_adapter,
                           method_name)
from .models import Precision, load_model, model_identity
from .plan import BASE, REFERENCE, run_id
from .records import Observation
from .store import RunRecord, Store
from .store.lock import OutputLock
from .run_step import Measured, References, measure_model, score_run
from .sweep import SweepResult, check_writable
from .tasks import TASKS, Task, task_vocabulary

__all__ = ["ADAPTER_WEIGHTS", "AuditSpec", "base_spec", "load_adapter", "method_name", "run_audit"]

logger = logging.getLogger(__name__)

MITIGATION_LAMBDA = 0.75
"""Share of each intruder direction the mitigation subtracts (PEFT's default `mitigation_lambda`)."""
TARGET_METRICS = frozenset({"shift_recovered", "target_fit"})
"""Metrics measured against the task's own target q: meaningless for adapters trained toward another target, so not
stored unless the audit says the adapters were trained on the task's data (`task_target`)."""
NO_TARGET_NOTE = ("Shift recovered and target fit are not shown: they measure the shift toward lowrank-audit's own "
                  "target for this task, and these adapters were trained toward theirs (pass --task-target if they were "
                  "trained on this task's data).")


class AuditSpec(BaseModel):
    """What to audit: a base model, adapter folders, an optional full fine-tune folder, one task."""

    model_config = ConfigDict(extra="forbid")

    base: ModelSpec
    adapters: list[Path]
    reference: Path | None = None
    task: str
    task_options: dict[str, Any] = {}
    seed: int = 0
    precision: Literal["auto", "fp32", "bf16"] = "fp32"
    """The precision of every evaluation forward pass (an audit trains nothing); fp32 by default, as in sweeps."""
    eval_batch_size: int = 32
    analysis: AnalysisSpec = AnalysisSpec()
    reduce_intruders: bool = False
    """Also audit each LoRA adapter after PEFT's intruder mitigation (`reduce_intruder_dimension`), beside the original."""
    names: list[str] = []
    """One name per adapter, in order (default: each adapter's folder name); the name identifies the audited run."""
    task_target: bool = False
    """The adapters were trained toward the task's own target (its training data): only then is shift recovered
    (and target fit) meaningful, and stored."""


def base_spec(text: str) -> ModelSpec:
    """`--base`: 'default' (embedded SmolLM2), 'tiny' (the test model), or a HF hub id / local folder."""
    if not text.strip():
        raise AuditError("--base is empty: give 'default', a hub id or a local model folder.")
    return ModelSpec(source=text) if text in ("default", "tiny") else ModelSpec(source="hf", path=text)


def load_adapter(base: nn.Module, folder: Path) -> nn.Module:
    """Attach a PEFT adapter to a copy of `base`; a clear error when it was trained for another model."""
    from peft import PeftModel

    try:
        return PeftModel.from_pretrained(copy.deepcopy(base), folder)
    except (ValueError, RuntimeError, KeyError) as e:
        raise AuditError(f"adapter {folder} does not fit this base model (was it trained on another one?): "
                         f"{str(e).strip().splitlines()[0]}") from None


def reduce_intruders(model: nn.Module, analysis: AnalysisSpec) -> None:
    """PEFT's intruder mitigation (peft >= 0.19, `peft.tuners.lora.intruders.reduce_intruder_dimension`; Shuttleworth
    et al. 2024): in each LoRA layer, the intruder directions of W_0 + dW (top k, max |cos| < epsilon) are scaled by
    1 - lambda, and the result is refitted as a rank-r adapter 'intruder_reduced', which becomes the active one."""
    from peft.tuners.lora.intruders import reduce_intruder_dimension

    reduce_intruder_dimension(model, top_k=analysis.intruder_top_k, threshold_epsilon=analysis.intruder_epsilon,
                              mitigation_lambda=MITIGATION_LAMBDA, logging_sink=None)


def load_reference(base: nn.Module, folder: Path) -> nn.Module:
    if not (folder / "model.safetensors").is_file():
        raise AuditError(f"reference {folder} has no model.safetensors (a full fine-tune saved with save_pretrained()).")
    check_safetensors(folder / "model.safetensors")
    try:
        return FullFineTuning(FullOptions()).load(copy.deepcopy(base), folder)
    except (ValueError, RuntimeError) as e:
        raise AuditError(f"reference {folder} does not fit this base model: {str(e).splitlines()[0]}") from None


@dataclass(frozen=True)
class Slot:
    """One audited model: method and rank, `source` (its identity, part of the run id), how to load it (None: the
    base, scored on its own observation), its label and warnings; `keep_left`: singular vectors its cache keeps."""

    method: str
    rank: int | None
    source: dict[str, Any]
    label: str
    load: Callable[[nn.Module], nn.Module] | None = None
    keep_left: int | None = None
    warnings: tuple[str, ...] = ()


class Audit:
    """Evaluate existing weights the way a sweep evaluates trained ones."""

    def __init__(self, spec: AuditSpec, out_dir: Path, progress: bool) -> None:
        self.spec, self.out_dir, self.progress = spec, out_dir, progress
        names, base = adapter_names(spec.adapters, spec.names), KnownModel.of_base(spec.base)
        self.adapters = [inspect_adapter(folder, name, base) for folder, name in zip(spec.adapters, names)]
        for info in self.adapters:
            if spec.reduce_intruders and (info.config.get("peft_type") != "LORA" or info.config.get("use_dora")):
                raise AuditError(f"--reduce-intruders applies PEFT's mitigation, which takes LoRA adapters only; "
                                 f"{info.folder} is {'DoRA' if info.config.get('use_dora') else info.config.get('peft_type')}. "
                                 "Leave it out of this audit or drop --reduce-intruders.")
            for warning in info.warnings:
                logger.warning(f"warning: {warning}")
        self.precision = Precision.resolve(spec.precision)
        self.options = validate_options(TASKS.get(spec.task).Options, spec.task_options, "audit", "task_options")
        self.store = Store.in_dir(out_dir)
        identity = model_identity(spec.base, task_vocabulary())
        desc = f"audit on {identity} ({self.precision.name})"
        self.store.bind_experiment(hashlib.sha256(desc.encode()).hexdigest()[:16], desc)
        self.common = {"model": identity, "precision": self.precision.name, "seed": spec.seed,
                       "task": {"name": spec.task, "options": self.options.model_dump()}}
        if spec.analysis.model_dump(exclude_defaults=True):  # only non-default options: old audit ids stay valid
            self.common["analysis"] = spec.analysis.model_dump(exclude_defaults=True)
        self.cache = MeasuredCache(out_dir / "cache")

    def run(self) -> SweepResult:
        reference = self._reference()
        scored = {"reference": reference.source if reference else None, "task_target": self.spec.task_target}
        slots = [Slot(BASE, None, {}, "base")] + ([reference] if reference else [])
        slots += [s for info in self.adapters for s in self._adapter_slots(info)]
        todo = [s for s in slots if not self._current(s, scored)]
        result = SweepResult(self.out_dir, planned=len(slots), skipped=len(slots) - len(todo))
        if not todo:
            logger.info(f"nothing to do: all {len(slots)} audited models are in the store, scored against "
                        f"{'reference ' + reference.source['reference'] if reference else 'no reference'}.")
            return result
        self._load()
        base_obs = self.base_cache.get_or_compute(
            cache_key("base", self.loaded.identity, self.precision.name, self.task.fingerprint()),
            lambda: self.task.observe_base(self.runner, self.loaded.model))
        self.task.bind(base_obs)
        refs = References(base_obs)
        if reference is not None:
            refs = refs.with_reference(self._measured(reference, base_obs))
        for slot in todo:
            self._write(result, slot, Measured() if slot.load is None else self._measured(slot, base_obs), refs, scored)
        return result

    def _load(self) -> None:
        """The base model, the task and the runner: loaded only when some audited model is new or to be re-scored."""
        logger.info("loading base model ...")
        self.loaded = load_model(self.spec.base, task_vocabulary())
        self.task: Task = TASKS.get(self.spec.task)(self.options, self.loaded.tokenizer)
        self.runner = Runner(self.loaded.tokenizer, self.precision, self.spec.eval_batch_size, self.progress)
        self.base_cache = ObservationCache(self.out_dir / "cache")

    def _reference(self) -> Slot | None:
        """The full fine-tune every audited model is scored against: the one given now, else the one the store was
        last scored against (a later audit without --reference keeps it), else none."""
        if self.spec.reference is not None:
            folder = self.spec.reference.resolve()
            if not (folder / "model.safetensors").is_file():
                raise AuditError(f"reference {folder} has no model.safetensors (a full fine-tune saved with save_pretrained()).")
            source = {"reference": str(folder), "digest": digest(folder / "model.safetensors")}
        else:
            stored = [json.loads(r["config_json"]).get("scored_against") or {} for r in self.store.runs()
                      if r["method"] == REFERENCE and r["status"] == "finished"]
            source = next((s["reference"] for s in stored if s.get("reference")), None)
            if source is None:
                return None
        folder = Path(source["reference"])
        return Slot(REFERENCE, None, {**source, "role": "reference"}, f"reference {folder}",
                    lambda base: load_reference(base, folder))

    def _adapter_slots(self, info: AdapterInfo) -> list[Slot]:
        """The adapter's audit, and with --reduce-intruders its audit after the mitigation."""
        slot = Slot(info.method, info.rank, info.source, f"adapter {info.name} ({info.folder})",
                    lambda base: load_adapter(base, info.folder), info.rank, info.warnings)
        if not self.spec.reduce_intruders:
            return [slot]

        def reduced(base: nn.Module) -> nn.Module:
            model = load_adapter(base, info.folder)
            reduce_intruders(model, self.spec.analysis)
            return model

        return [slot, replace(slot, method=f"{info.method}{REDUCED}", label=f"{slot.label} with its intruders reduced",
                              source={**info.source, "intruders_reduced": self._mitigation()}, load=reduced)]

    def _mitigation(self) -> dict[str, Any]:
        """What the intruder mitigation is run with (part of the mitigated audit's identity)."""
        a = self.spec.analysis
        return {"top_k": a.intruder_top_k, "epsilon": a.intruder_epsilon, "lambda": MITIGATION_LAMBDA}

    def _measured(self, slot: Slot, base_obs: Observation) -> Measured:
        """The slot's measurement (observation, spectra, forgetting), from the cache when an earlier audit made it."""
        weights = {k: v for k, v in slot.source.items() if k not in ("name", "role")}  # a renamed adapter is the same
        key = cache_key("audited", self.common, slot.method, weights, self.task.fingerprint())
        measured = self.cache.get(key)
        if measured is None:
            logger.info(f"audit {slot.label}")
            model = slot.load(self.loaded.model)
            measured = measure_model(model, self.loaded.model, base_obs, slot.label,
                                     lambda m: self.task.observe(self.runner, m), self.runner, self.spec.analysis,
                                     self.spec.seed)[0]
            self.cache.put(key, measured, slot.keep_left)
        return measured

    def _identity(self, slot: Slot) -> dict[str, Any]:
        """What the audited run's id is made of (not what it is scored against, which a later audit may change)."""
        source = {k: v for k, v in slot.source.items() if slot.method != REFERENCE or k == "role"}
        return {**self.common, "method": {"name": slot.method}, "audit": source}

    def _current(self, slot: Slot, scored: dict[str, Any]) -> bool:
        """The slot's run is finished in the store and was scored against `scored` (reference and target)."""
        rid = run_id(self._identity(slot))
        if self.store.status(rid) != "finished":
            return False
        row = next(r for r in self.store.runs() if r["run_id"] == rid)
        return json.loads(row["config_json"]).get("scored_against") == scored

    def _write(self, result: SweepResult, slot: Slot, measured: Measured, refs: References,
               scored: dict[str, Any]) -> None:
        """Score one audited model (the run step's scoring, as in a sweep) and store it with what it was scored
        against, the notes the report shows beside it, and its name."""
        identity = self._identity(slot)
        rid = run_id(identity)
        notes = list(slot.warnings) + ([] if self.spec.task_target else [NO_TARGET_NOTE])
        config = {**identity, "scored_against": scored, "notes": notes}
        self.store.start_run(RunRecord(rid, self.spec.task, slot.method, slot.rank, self.spec.seed, config))
        measured = replace(measured, extra={**measured.extra, "artifact": slot.source.get("adapter")
                                            or slot.source.get("reference")})
        rows, extra = score_run(self.task, measured, refs, self.spec.seed, slot.method == REFERENCE, slot.rank,
                                self.spec.analysis)
        if not self.spec.task_target:
            rows = [r for r in rows if r.metric not in TARGET_METRICS]
        self.store.finish_run(rid, rows, **extra)
        result.finished += 1


def run_audit(spec: AuditSpec, out_dir: str | Path, progress: bool = True) -> SweepResult:
    """Audit `spec.adapters` (and the reference) into `out_dir`; one process at a time per folder."""
    check_writable(Path(out_dir))
    with OutputLock(out_dir):
        return Audit(spec, Path(out_dir), progress).run()
