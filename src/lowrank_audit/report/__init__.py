"""The report: reads a results store and writes report.html, report.md and plots (never trains)."""

from .build import ReportPaths, build_report
from .terminal import summary_table, verdict_text

__all__ = ["ReportPaths", "build_report", "summary_table", "verdict_text"]
