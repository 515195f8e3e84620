"""Who executes the runs of a sweep: this process, one at a time (`local`), one Ray task per run (`ray`), or every
process of a launch together (`launched`, chosen when the sweep was launched as several processes)."""

from ..registry import Registry
from .base import Executor
from .launched import LaunchBroken, LaunchedExecutor
from .local import LocalExecutor
from .ray_tasks import RayExecutor

EXECUTORS: Registry[type[Executor]] = Registry("executor")
EXECUTORS.register(LocalExecutor.name, LocalExecutor)
EXECUTORS.register(RayExecutor.name, RayExecutor)
EXECUTORS.register(LaunchedExecutor.name, LaunchedExecutor)

__all__ = ["EXECUTORS", "Executor", "LaunchBroken", "LaunchedExecutor", "LocalExecutor", "RayExecutor"]
