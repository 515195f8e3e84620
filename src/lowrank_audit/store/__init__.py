"""Results store: one SQLite file per output folder."""

from .sqlite import MetricRow, RunRecord, SampleRow, Store

__all__ = ["MetricRow", "RunRecord", "SampleRow", "Store"]
