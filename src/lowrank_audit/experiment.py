"""An experiment as the commands take it: a preset or YAML file read into an ExperimentSpec whose task and method
names and options are checked against the registries, then narrowed to the tasks and methods given on the command
line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .config import ExperimentSpec, read_spec
from .errors import AuditError
from .methods import METHODS
from .plan import validate_components
from .tasks import TASKS


def load_spec(config: str | Path | None = None, preset: str | None = None) -> ExperimentSpec:
    """Read a config file, or a preset (default 'quick'), into a validated ExperimentSpec."""
    spec, source = read_spec(config, preset)
    validate_components(spec, source)
    return spec


def narrow(spec: ExperimentSpec, tasks: list[str] | None = None, methods: list[str] | None = None) -> ExperimentSpec:
    """Keep only the named tasks and methods (CLI --task / --method); unknown names are errors."""
    update: dict[str, Any] = {}
    if tasks:
        for t in tasks:
            TASKS.card(t)
        kept = [t.model_copy(update={"enabled": True}) for t in spec.tasks if t.name in tasks]
        if not kept:
            raise AuditError(f"--task {', '.join(tasks)}: this config has only {', '.join(t.name for t in spec.tasks)}.")
        update["tasks"] = kept
    if methods:
        for m in methods:
            METHODS.card(m)
        kept_m = [m for m in spec.methods if m.name in methods]
        if not kept_m:
            raise AuditError(
                f"--method {', '.join(methods)}: this config has only {', '.join(m.name for m in spec.methods)}."
            )
        update["methods"] = kept_m
    return spec.model_copy(update=update)
