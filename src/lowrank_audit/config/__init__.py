"""Experiment configuration: pydantic models, built-in presets, YAML loading with path-named errors (schema only:
the registries check names and options in `experiment`)."""

from .load import PRESETS, read_spec, with_execution, with_precision
from .spec import BudgetSpec, ExecutionSpec, ExperimentSpec, MethodSpec, ModelSpec, TaskSpec, TinyModelSpec

__all__ = [
    "PRESETS",
    "BudgetSpec",
    "ExecutionSpec",
    "ExperimentSpec",
    "MethodSpec",
    "ModelSpec",
    "TaskSpec",
    "TinyModelSpec",
    "read_spec",
    "with_execution",
    "with_precision",
]
