"""Results store: one SQLite file per output folder."""

from .sqlite import RunRecord, Store

__all__ = ["RunRecord", "Store"]
