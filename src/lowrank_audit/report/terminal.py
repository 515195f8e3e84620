"""A compact rich table of all runs, for the terminal at the end of a sweep."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from ..catalogue import COST
from .catalogue import task_metrics
from .data import Run, load, run_order, splits_of
from .tables import fmt_number, fmt_rank
from .verdict import verdict_lines

_STATUS_STYLE = {"finished": "green", "failed": "bold red", "running": "yellow"}


def summary_table(out_dir: str | Path) -> Table:
    """One row per run: identity, status, and the metrics the catalogue gives a terminal heading (`short`)."""
    runs = sorted((r for r in load(out_dir).runs if not r.tuning), key=lambda r: (r.task, run_order(r)))
    metrics = {m.name: m for task in sorted({r.task for r in runs}) for m in task_metrics(task) if m.short}
    ordered = sorted(metrics.values(), key=lambda m: (not m.per_split, m in COST))  # per split, per run, then cost
    cols: list[tuple[str, str, str | None, int | None]] = [  # heading, metric, split, decimals
        (f"{m.short} {s}", m.name, s, m.digits) for m in ordered if m.per_split
        for s in (m.short_splits or splits_of(runs, m.name))
    ]
    cols += [(m.short, m.name, None, m.digits) for m in ordered if not m.per_split]
    cols = [c for c in cols if any((c[1], None, c[2], None) in r.metrics for r in runs)]
    table = Table(title=f"lowrank-audit: {len(runs)} runs in {out_dir}")
    for name in ("task", "method"):
        table.add_column(name)
    for name in ("rank", "seed"):
        table.add_column(name, justify="right")
    table.add_column("status")
    for heading, *_ in cols:
        table.add_column(heading, justify="right")
    for run in runs:
        table.add_row(*_identity(run), *(_cell(run, metric, split, digits) for _, metric, split, digits in cols))
    return table


def verdict_text(out_dir: str | Path) -> str:
    """The report's verdict as plain lines (empty when no task has one)."""
    return "\n".join(verdict_lines(load(out_dir)))


def _identity(run: Run) -> list[Text]:
    return [Text(run.task), Text(run.who), Text(fmt_rank(run.rank)), Text(str(run.seed)),
            Text(run.status, style=_STATUS_STYLE.get(run.status, ""))]


def _cell(run: Run, metric: str, split: str | None, digits: int | None) -> Text:
    """The value, n/a when undefined, empty for runs without results."""
    if run.status != "finished":
        return Text("")
    return Text(fmt_number(run.get(metric, split).value, digits))
