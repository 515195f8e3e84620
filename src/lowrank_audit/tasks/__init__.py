"""Task registry: each task's card (name, options, metric catalogue; imports no torch) and the path of its
implementation, imported only when the task runs. Adding a task: its card, its module, one entry here."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..registry import Components
from .card import TaskCard, TaskOptions
from .classification_card import ClassificationCard
from .debias_card import DebiasCard
from .decisions_card import DecisionsCard
from .stereotype_card import StereotypeCard
from .toxicity_card import ToxicityCard

if TYPE_CHECKING:
    from .base import Task

TASKS: Components[type[TaskCard], type[Task]] = Components("task")
for _card, _path in ((ClassificationCard, "classification:ClassificationTask"), (DebiasCard, "debias:DebiasTask"),
                     (DecisionsCard, "decisions:DecisionsTask"), (StereotypeCard, "stereotype:StereotypeTask"),
                     (ToxicityCard, "toxicity:ToxicityTask")):
    TASKS.register_lazy(_card, f"{__name__}.{_path}")


def task_vocabulary() -> list[str]:
    """Words of every registered task, so one tiny model's tokenizer serves all tasks."""
    return sorted({w for _, cls in TASKS for w in cls.vocabulary()})


def __getattr__(name: str) -> Any:
    """`Task` (tasks/base.py: torch), imported on first use."""
    if name == "Task":
        from .base import Task

        return Task
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["TASKS", "Task", "TaskCard", "TaskOptions", "task_vocabulary"]
