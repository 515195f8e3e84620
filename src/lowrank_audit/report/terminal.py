"""The end-of-sweep summary for the terminal: per task, narrow rich tables that fit the console (80 columns and up),
each value with its interval on a second line, degenerate runs marked."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ..catalogue import COST
from .catalogue import task_metrics
from .data import Run, Value, load, run_order, splits_of
from .degenerate import DEFINITION as DEGENERATE_DEFINITION
from .tables import NA, fmt_number, fmt_rank
from .verdict import verdict_lines

_STATUS_STYLE = {"failed": "bold red", "running": "yellow"}
DEGENERATE_MARK = "!"
MAX_CELL_WIDTH = 16
"""The widest a value column gets (its heading folds to fit)."""
_METHOD_WIDTH = 12


@dataclass(frozen=True)
class _Col:
    heading: str
    metric: str
    split: str | None
    digits: int | None


def summary_table(out_dir: str | Path, width: int = 80) -> Group:
    """Per task, tables of one row per run (method and rank, seed when there are several) and the metrics the
    catalogue gives a terminal heading (`short`), as many per table as fit `width` columns."""
    runs = sorted((r for r in load(out_dir).runs if not r.tuning), key=lambda r: (r.task, run_order(r)))
    parts: list = [Text(f"lowrank-audit: {len(runs)} runs in {out_dir}", style="bold")]
    for task in sorted({r.task for r in runs}):
        parts += _task_tables(task, [r for r in runs if r.task == task], width)
    if any(r.degenerate for r in runs):
        parts.append(Text(f"{DEGENERATE_MARK} {DEGENERATE_DEFINITION}", style="red"))
    return Group(*parts)


def _task_tables(task: str, runs: list[Run], width: int) -> list[Table]:
    cols = _columns(task, runs)
    seeds = len({r.seed for r in runs}) > 1
    cells = {c: [_value(r.get(c.metric, c.split), c.digits) if r.status == "finished" else Text(r.status) for r in runs]
             for c in cols}
    widths = {c: min(MAX_CELL_WIDTH, max([6, *(len(w) for w in c.heading.split())]
                                         + [len(line) for t in cells[c] for line in t.plain.splitlines()]))
              for c in cols}
    chunks = _pack(cols, widths, width - 1 - (_METHOD_WIDTH + 3) - (7 if seeds else 0))
    tables = []
    for i, chunk in enumerate(chunks):
        title = task + (f" ({i + 1} of {len(chunks)})" if len(chunks) > 1 else "")
        table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        table.add_column("method", min_width=_METHOD_WIDTH, max_width=_METHOD_WIDTH + 8, overflow="fold")
        if seeds:
            table.add_column("seed", justify="right")
        for col in chunk:
            table.add_column(col.heading, justify="right", width=widths[col], overflow="fold")
        for run in runs:
            table.add_row(*_identity(run, seeds), *_cells(run, chunk))
        tables.append(table)
    return tables


def verdict_text(out_dir: str | Path) -> str:
    """The report's verdict as plain lines (empty when no task has one)."""
    return "\n".join(verdict_lines(load(out_dir)))


def _pack(cols: list[_Col], widths: dict[_Col, int], room: int) -> list[list[_Col]]:
    """Consecutive columns, as many per table as fit `room` characters (each also takes 3: padding and separator)."""
    chunks: list[list[_Col]] = [[]]
    used = 0
    for col in cols:
        if chunks[-1] and used + widths[col] + 3 > room:
            chunks.append([])
            used = 0
        chunks[-1].append(col)
        used += widths[col] + 3
    return chunks


def _columns(task: str, runs: list[Run]) -> list[_Col]:
    """Per split metrics, per run metrics, then cost; only those some run of the task has."""
    shown = sorted((m for m in task_metrics(task) if m.short), key=lambda m: (not m.per_split, m in COST))
    cols = [_Col(f"{m.short} {s.replace('_', ' ').replace('/', ' ')}", m.name, s, m.digits) for m in shown if m.per_split
            for s in (m.short_splits or splits_of(runs, m.name))]
    cols += [_Col(m.short, m.name, None, m.digits) for m in shown if not m.per_split]
    return [c for c in cols if any((c.metric, None, c.split, None) in r.metrics for r in runs)]


def _identity(run: Run, seeds: bool) -> list[Text]:
    label = run.who + ("" if run.rank is None else f" r={fmt_rank(run.rank)}")
    cell = Text(label)
    if run.degenerate:
        cell.append(f" {DEGENERATE_MARK}", style="bold red")
    return [cell] + ([Text(str(run.seed))] if seeds else [])


def _cells(run: Run, cols: list[_Col]) -> list[Text]:
    """Value over interval; a run without results shows its status in the first cell."""
    if run.status != "finished":
        return [Text(run.status, style=_STATUS_STYLE.get(run.status, ""))] + [Text("") for _ in cols[1:]]
    return [_value(run.get(c.metric, c.split), c.digits) for c in cols]


def _value(v: Value, digits: int | None) -> Text:
    if v.value is None:
        return Text(NA, style="dim")
    text = Text(fmt_number(v.value, digits))
    if v.low is not None and v.high is not None:
        text.append(f"\n{fmt_number(v.low, digits)}–{fmt_number(v.high, digits)}", style="dim")
    return text
