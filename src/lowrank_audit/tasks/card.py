"""What config validation and the report read of a task, importable without torch: its options and its card (name,
description, options, metric catalogue, verdict, data sources, validation split). A task's implementation (tasks/base.py:
Task) subclasses its card, in a module the registry imports only to run the task."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from ..catalogue import Headline, MetricInfo


class TaskOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)


class TaskCard:
    """A task's name, description, options and what its report shows (tasks/__init__.py registers it with its
    implementation's path)."""

    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type[TaskOptions]]
    metrics: ClassVar[tuple[MetricInfo, ...]] = ()
    """The catalogue of what `score` stores (how the report and the terminal show it), the results table's order."""
    headline: ClassVar[Headline | None] = None
    """The metrics the report's verdict compares with full fine-tuning (None: the task has no verdict yet)."""
    data_sources: ClassVar[tuple[tuple[str, str], ...]] = ()
    """(heading, text) the report prints among the task's definitions: where each of its data came from (source,
    licence) and how its fine-tuning data are made; () when it says nothing."""
    validation_metric: ClassVar[str | None] = None
    """The metric `score` stores on the task's validation split, lower is better, that tuning selects on: the held-out
    loss of the fine-tuning objective (never an audited fairness outcome). None: the task has no validation split yet."""
    validation_option: ClassVar[str | None] = None
    """The option that sizes the validation split (0 turns it off, and with it tuning); None: always on."""

    @classmethod
    def selects_on(cls, options: TaskOptions) -> str | None:
        """The validation metric under these options (None: this configuration has no validation split)."""
        if cls.validation_option and not getattr(options, cls.validation_option):
            return None
        return cls.validation_metric
