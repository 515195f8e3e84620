"""Optimizers implemented here (FRUGAL); `optim.galore` (imported on demand) makes galore-torch's checkpointable."""

from .frugal import Frugal

__all__ = ["Frugal"]
