"""Task registry: one module per task, one register() line each."""

from ..registry import Registry
from .base import Example, Observation, Task, TaskOptions
from .debias import DebiasTask

TASKS: Registry[type[Task]] = Registry("task")
TASKS.register(DebiasTask.name, DebiasTask)

__all__ = ["TASKS", "Example", "Observation", "Task", "TaskOptions"]
