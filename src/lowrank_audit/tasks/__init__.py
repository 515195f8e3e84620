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

__all__ = ["TASKS", "Task", "TaskOptions"]
