"""Task registry: one module per task, one register() line each."""

from ..registry import Registry
from .base import Task, TaskOptions
from .classification import ClassificationTask
from .debias import DebiasTask
from .decisions import DecisionsTask
from .stereotype import StereotypeTask
from .toxicity import ToxicityTask

TASKS: Registry[type[Task]] = Registry("task")
TASKS.register(ClassificationTask.name, ClassificationTask)
TASKS.register(DebiasTask.name, DebiasTask)
TASKS.register(DecisionsTask.name, DecisionsTask)
TASKS.register(StereotypeTask.name, StereotypeTask)
TASKS.register(ToxicityTask.name, ToxicityTask)


def task_vocabulary() -> list[str]:
    """Words of every registered task, so one tiny model's tokenizer serves all tasks."""
    return sorted({w for _, cls in TASKS for w in cls.vocabulary()})


__all__ = ["TASKS", "Task", "TaskOptions", "task_vocabulary"]
