"""Expand an ExperimentSpec into runs: (task, method options, seed) with stable ids from their config.

A method with `tune` is a tuning family: at the first seed one run per grid point; at the other seeds one run at the
point the sweep chose on the validation split (`choices`, read from the store), planned once the choice exists.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from .hashing import stable_hash
from .config.load import validate_options
from .config.spec import ExperimentSpec
from .errors import AuditError
from .methods import METHODS, MethodOptions
from .methods.budget import match_budget
from .tasks import TASKS, TaskOptions

if TYPE_CHECKING:  # validate_components runs before torch is imported (a config error answers in a second)
    from torch import nn

    from .methods import Method

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
    family: str | None = None
    """The tuning family this run is a grid point of (at the first seed); None for every other run."""
    tuned: tuple[tuple[str, Any], ...] = ()
    """The tuned options' values: its grid point (at the first seed) or the chosen point (at the others)."""

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


@dataclass(frozen=True)
class MethodRun:
    """One configured method run before seeds: its options, the option names the config sets, and its tuning grid."""

    name: str
    options: MethodOptions
    given: frozenset[str]
    tune: tuple[tuple[str, tuple[Any, ...]], ...] = ()

    def points(self) -> list[dict[str, Any]]:
        """Every grid point (one empty point without a grid)."""
        return _combinations({k: list(v) for k, v in self.tune})


def _method_options(spec: ExperimentSpec, source: str) -> list[MethodRun]:
    """Every configured run of each method (one per `sweep` combination), with its tuning grid."""
    out = []
    for i, m in enumerate(spec.methods):
        cls = METHODS.card(m.name)
        if m.name == BASE:
            raise AuditError(f"{source}: methods[{i}]: 'base' is added to every sweep as the reference; remove it.")
        for field_name, grid in (("sweep", m.sweep), ("tune", m.tune)):
            for key, values in grid.items():
                if key not in cls.Options.model_fields:
                    raise AuditError(
                        f"{source}: methods[{i}].{field_name}.{key}: {m.name} has no option {key!r} "
                        f"(options: {', '.join(cls.Options.model_fields)})."
                    )
                if not values:
                    raise AuditError(f"{source}: methods[{i}].{field_name}.{key}: give at least one value.")
        tune = tuple((k, tuple(v)) for k, v in m.tune.items())
        for combo in _combinations(m.sweep):
            options = validate_options(cls.Options, {**m.options, **combo}, source, f"methods[{i}]")
            for point in _combinations(m.tune) if m.tune else []:
                validate_options(cls.Options, {**m.options, **combo, **point}, source, f"methods[{i}].tune")
            out.append(MethodRun(m.name, options, frozenset(m.options) | frozenset(m.sweep) | frozenset(m.tune), tune))
    return out


def validate_components(spec: ExperimentSpec, source: str) -> None:
    """Check every task and method name and option before anything is loaded or trained."""
    for i, t in enumerate(spec.tasks):
        validate_options(TASKS.card(t.name).Options, t.options, source, f"tasks[{i}].options")
    _method_options(spec, source)


def untuned_tasks(spec: ExperimentSpec) -> list[str]:
    """The enabled tasks a tuned method cannot be tuned on (no validation split): there it runs at its grid's middle."""
    if not any(m.tune for m in spec.methods):
        return []
    return [t.name for t in spec.tasks if t.enabled and TASKS.card(t.name).selects_on(
        TASKS.card(t.name).Options.model_validate(t.options)) is None]


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
              model: nn.Module | None = None, choices: Mapping[str, dict[str, Any]] | None = None) -> list[PlannedRun]:
    """Every run of the sweep that can be planned now; the base model is one run per task and seed (it does not depend
    on the budget). A tuning family's later seeds are planned once `choices` (family -> chosen point) has its choice.

    With `budget.params`, each method's size is chosen on `model` (the base model); without a model, as configured.
    """
    from .models.precision import resolve_precision  # torch: planning runs, never validating a config

    choices = choices or {}
    methods = [MethodRun(BASE, METHODS.card(BASE).Options(), frozenset())] + [
        MethodRun(m.name, _budgeted(m.name, m.options, m.given, spec, model), m.given, m.tune)
        for m in _method_options(spec, source)]
    common = {"model": model_identity, "precision": precision, "eval_precision": resolve_precision(spec.eval_precision)}
    runs: dict[str, PlannedRun] = {}
    for i, t in enumerate(spec.tasks):
        if not t.enabled:
            continue
        topts = validate_options(TASKS.card(t.name).Options, t.options, source, f"tasks[{i}].options")
        task = {"name": t.name, "options": topts.model_dump()}
        for seed in spec.seeds:
            for m in methods:
                config = {**common, "task": task, "method": {"name": m.name, "options": m.options.model_dump()}}
                if m.name != BASE:
                    config["budget"] = spec.budget.model_dump(exclude_none=True)
                    analysis = spec.analysis.model_dump(exclude_defaults=True)  # only non-default options count,
                    if analysis:                                                # so run ids without them stay valid
                        config["analysis"] = analysis
                family = stable_hash({**config, "tune": m.tune}) if m.tune else None
                if family is not None and TASKS.card(t.name).selects_on(topts) is None:
                    points, run_family = [{k: v[len(v) // 2] for k, v in m.tune}], None  # nothing to choose on
                elif family is None or seed == spec.seeds[0]:
                    points, run_family = m.points(), family
                elif family in choices:
                    points, run_family = [choices[family]], None
                else:
                    continue
                for point in points:
                    options = type(m.options).model_validate({**m.options.model_dump(), **point})
                    run_config = {**config, "method": {"name": m.name, "options": options.model_dump()}, "seed": seed}
                    rid = run_id(run_config)
                    runs.setdefault(rid, PlannedRun(rid, t.name, topts, m.name, options, seed, run_config, run_family,
                                                    tuple(point.items())))
    return list(runs.values())


def experiment_fingerprint(spec: ExperimentSpec, model_identity: str, precision: str) -> tuple[str, str]:
    """What makes two sweeps the same experiment (and may share an output folder), and its description."""
    desc = f"{spec.name} on {model_identity} ({precision})"
    return hashlib.sha256(desc.encode()).hexdigest()[:16], desc
