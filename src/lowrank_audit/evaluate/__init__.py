"""The evaluation engine: one batched runner for every task's forward passes, and the reference cache."""

from .cache import ObservationCache
from .runner import Runner

__all__ = ["ObservationCache", "Runner"]
