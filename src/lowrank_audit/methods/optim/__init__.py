"""Optimizers implemented here (FRUGAL)."""

from .frugal import Frugal

__all__ = ["Frugal"]
