"""Expand an ExperimentSpec into runs: (task, method options, seed) with stable ids from their config."""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import Any

from torch import nn

from .hashing import stable_hash
from .config.load import validate_options
from .config.spec import ExperimentSpec
from .errors import AuditError
from .methods import METHODS, Method, MethodOptions
from .methods.budget import match_budget
from .tasks import TASKS, TaskOptions

BASE = "base"
REFERENCE = "full"


@dataclass(frozen=True)
class PlannedRun:
    run_id: str
    task: str
    task_options: TaskOptions
    method: str
    method_options: MethodOptions
    seed: int
    config: dict[str, Any]

    def build_method(self) -> Method:
        return METHODS.get(self.method)(self.method_options)

    @property
    def method_key(self) -> tuple[str, str]:
        """What makes two runs' methods the same (name and options), whatever their task and seed."""
        return self.method, self.method_options.model_dump_json()

    @property
    def group(self) -> tuple[str, str, int]:
        """Runs of one (task, task options, seed) share the base and the full fine-tune reference."""
        return self.task, json.dumps(self.task_options.model_dump(), sort_keys=True), self.seed


def _combinations(sweep: dict[str, list[Any]]) -> list[dict[str, Any]]:
    keys = list(sweep)
    return [dict(zip(keys, values)) for values in itertools.product(*(sweep[k] for k in keys))]


def _method_options(spec: ExperimentSpec, source: str) -> list[tuple[str, MethodOptions, frozenset[str]]]:
    """(name, options, the option names the config sets) per run of each method."""
    out = []
    for i, m in enumerate(spec.methods):
        cls = METHODS.get(m.name)
        if m.name == BASE:
            raise AuditError(f"{source}: methods[{i}]: 'base' is added to every sweep as the reference; remove it.")
        for key, values in m.sweep.items():
            if key not in cls.Options.model_fields:
                raise AuditError(
                    f"{source}: methods[{i}].sweep.{key}: {m.name} has no option {key!r} "
                    f"(options: {', '.join(cls.Options.model_fields)})."
                )
            if not values:
                raise AuditError(f"{source}: methods[{i}].sweep.{key}: give at least one value.")
        for combo in _combinations(m.sweep):
            options = validate_options(cls.Options, {**m.options, **combo}, source, f"methods[{i}]")
            out.append((m.name, options, frozenset(m.options) | frozenset(m.sweep)))
    return out


def validate_components(spec: ExperimentSpec, source: str) -> None:
    """Check every task and method name and option before anything is loaded or trained."""
    for i, t in enumerate(spec.tasks):
        validate_options(TASKS.get(t.name).Options, t.options, source, f"tasks[{i}].options")
    _method_options(spec, source)


def _budgeted(name: str, options: MethodOptions, given: frozenset[str], spec: ExperimentSpec,
              model: nn.Module | None) -> MethodOptions:
    """The options with the method's size chosen to match `budget.params`, unless the config sets the size."""
    cls = METHODS.get(name)
    if spec.budget.params is None or model is None or cls.size_option is None or cls.size_option in given:
        return options
    return match_budget(cls, options, model, spec.budget.params)[0]


def run_id(config: dict[str, Any]) -> str:
    return stable_hash(config)


def plan_runs(spec: ExperimentSpec, model_identity: str, precision: str, source: str = "config",
              model: nn.Module | None = None) -> list[PlannedRun]:
    """Every run of the sweep; the base model is one run per task and seed (it does not depend on the budget).

    With `budget.params`, each method's size is chosen on `model` (the base model); without a model, as configured.
    """
    methods = [(BASE, METHODS.get(BASE).Options())] + [
        (name, _budgeted(name, opts, given, spec, model)) for name, opts, given in _method_options(spec, source)]
    runs: dict[str, PlannedRun] = {}
    for i, t in enumerate(spec.tasks):
        if not t.enabled:
            continue
        topts = validate_options(TASKS.get(t.name).Options, t.options, source, f"tasks[{i}].options")
        for seed in spec.seeds:
            for name, mopts in methods:
                config = {
                    "model": model_identity,
                    "precision": precision,
                    "task": {"name": t.name, "options": topts.model_dump()},
                    "method": {"name": name, "options": mopts.model_dump()},
                    "seed": seed,
                }
                if name != BASE:
                    config["budget"] = spec.budget.model_dump(exclude_none=True)
                    analysis = spec.analysis.model_dump(exclude_defaults=True)  # only non-default options count,
                    if analysis:                                                # so run ids without them stay valid
                        config["analysis"] = analysis
                rid = run_id(config)
                runs.setdefault(rid, PlannedRun(rid, t.name, topts, name, mopts, seed, config))
    return list(runs.values())


def experiment_fingerprint(spec: ExperimentSpec, model_identity: str, precision: str) -> tuple[str, str]:
    """What makes two sweeps the same experiment (and may share an output folder), and its description."""
    desc = f"{spec.name} on {model_identity} ({precision})"
    return hashlib.sha256(desc.encode()).hexdigest()[:16], desc
