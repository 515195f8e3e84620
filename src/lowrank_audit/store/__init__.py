"""Results store: one SQLite file per output folder."""

from .sqlite import MetricRow, RunRecord, Store

__all__ = ["MetricRow", "RunRecord", "Store"]
