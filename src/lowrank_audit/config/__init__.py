"""Experiment configuration: pydantic models, built-in presets, YAML loading with path-named errors."""

from .load import PRESETS, load_spec, narrow, with_execution, with_precision
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
    "load_spec",
    "narrow",
    "with_execution",
    "with_precision",
]
