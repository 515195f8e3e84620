"""The report: reads a results store and writes report.html, report.md and plots (never trains)."""

from .build import ReportPaths, build_report, report_is_current
from .terminal import summary_table, verdict_text

__all__ = ["ReportPaths", "build_report", "report_is_current", "summary_table", "verdict_text"]
