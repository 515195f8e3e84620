"""Read an ExperimentSpec from a preset or a YAML file (safe_load) and check its schema; override its execution and
precision from CLI flags. Checking names and options against the registries is `experiment.load_spec`'s job."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any, Iterable

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import AuditError
from .spec import ExecutionSpec, ExperimentSpec

PRESETS = sorted(p.name.removesuffix(".yaml") for p in resources.files(__package__).joinpath("presets").iterdir()
                 if p.name.endswith(".yaml"))


def _loc(loc: Iterable[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def format_validation_error(err: ValidationError, source: str, prefix: str = "") -> str:
    """One line per problem: 'source: methods[1].options.rnk: Extra inputs are not permitted'."""
    lines = []
    for e in err.errors():
        path = _loc(e["loc"])
        path = f"{prefix}.{path}" if prefix and path != "(top level)" else (prefix or path)
        lines.append(f"{source}: {path}: {e['msg']}")
    return "\n".join(lines)


def validate_options(options_cls: type[BaseModel], options: dict[str, Any], source: str, prefix: str) -> BaseModel:
    """Validate a task's or method's options, with errors that name the key path."""
    try:
        return options_cls.model_validate(options)
    except ValidationError as e:
        raise AuditError(format_validation_error(e, source, prefix)) from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        raise AuditError(f"config file {path} does not exist. Pass a YAML file or use --preset ({', '.join(PRESETS)}).") from None
    except IsADirectoryError:
        raise AuditError(f"config file {path} is a folder. Pass a YAML file or use --preset ({', '.join(PRESETS)}).") from None
    except UnicodeDecodeError as e:
        raise AuditError(f"{path} is not a text file (byte {e.start} is not UTF-8); a config is a YAML text file.") from None
    except OSError as e:
        raise AuditError(f"cannot read config file {path}: {e.strerror}. Pass a readable YAML file.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        raise AuditError(f"{path} is not valid YAML: {str(e).splitlines()[0]}{where}") from None
    if not isinstance(data, dict):
        raise AuditError(f"{path} must hold a YAML mapping (name, model, tasks, methods, budget, ...), not {type(data).__name__}.")
    return data


def preset_path(name: str) -> Path:
    if name not in PRESETS:
        from ..registry import Registry

        reg: Registry[str] = Registry("preset")
        for p in PRESETS:
            reg.register(p, p)
        reg.get(name)
    return Path(str(resources.files(__package__).joinpath("presets", f"{name}.yaml")))


def read_spec(config: str | Path | None = None, preset: str | None = None) -> tuple[ExperimentSpec, str]:
    """Read a config file, or a preset (default 'quick'), into an ExperimentSpec whose schema is valid; and its path."""
    if config is not None and preset is not None:
        raise AuditError("give either a config file or --preset, not both.")
    path = Path(config) if config is not None else preset_path(preset or "quick")
    data = _read_yaml(path)
    try:
        return ExperimentSpec.model_validate(data), str(path)
    except ValidationError as e:
        raise AuditError(format_validation_error(e, str(path))) from None


def with_execution(spec: ExperimentSpec, executor: str | None = None, ray_address: str | None = None) -> ExperimentSpec:
    """Override how the runs are executed (CLI --executor / --ray-address; None = as configured).

    A Ray address means Ray: `--ray-address` alone selects the ray executor.
    """
    given: dict[str, Any] = {}
    if executor:
        given["executor"] = executor
    if ray_address:
        if executor not in (None, "ray"):
            raise AuditError(f"--ray-address needs the ray executor, not --executor {executor}; drop one of the two.")
        given.update(executor="ray", ray_address=ray_address)
    if not given:
        return spec
    try:
        execution = ExecutionSpec.model_validate({**spec.execution.model_dump(), **given})
    except ValidationError as e:
        raise AuditError(format_validation_error(e, "command line", "execution")) from None
    return spec.model_copy(update={"execution": execution})


def with_precision(spec: ExperimentSpec, precision: str | None) -> ExperimentSpec:
    """Override the sweep's precision (CLI --precision; None = as configured)."""
    if precision is None:
        return spec
    try:
        return ExperimentSpec.model_validate({**spec.model_dump(), "precision": precision})
    except ValidationError as e:
        raise AuditError(format_validation_error(e, "command line", "")) from None
