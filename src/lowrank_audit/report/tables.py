"""Report tables as formatted strings, independent of the output format (markdown, HTML, terminal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence

from ..catalogue import MetricInfo
from .data import MetricKey, Run, Value, Variant, splits_of
from .degenerate import DEFINITION as DEGENERATE_DEFINITION, MARK as DEGENERATE

NA = "n/a"
NO_RANK = "—"
MAX_VALUE_COLUMNS = 8
"""Metric columns per results table: more are split into several tables, so that each fits a 1,400 px page with its
intervals on a second line (and a terminal or markdown viewer stays readable)."""


@dataclass(frozen=True)
class Column:
    """A table column: `group` is the heading, `label` an optional sub-heading (e.g. the split)."""

    group: str
    label: str = ""
    numeric: bool = True

    @property
    def title(self) -> str:
        return f"{self.group} ({self.label})" if self.label else self.group


@dataclass(frozen=True)
class MetricColumn(Column):
    """A column showing one metric (summary over groups) at one split, with `digits` decimals."""

    metric: str = ""
    split: str | None = None
    digits: int = 3
    interval: bool = True

    @property
    def key(self) -> MetricKey:
        return (self.metric, None, self.split, None)


@dataclass(frozen=True)
class HeaderCell:
    text: str
    colspan: int = 1
    rowspan: int = 1


@dataclass
class TableView:
    """A titled table of already formatted cells."""

    title: str
    columns: list[Column]
    rows: list[list[str]]
    note: str = ""
    flagged: frozenset[int] = frozenset()
    """Rows (by index) of degenerate runs, which the HTML page highlights."""

    def header(self) -> tuple[list[HeaderCell], list[str]]:
        """Two header rows for HTML: grouped headings (spanning their splits) and the sub-headings."""
        top: list[HeaderCell] = []
        sub: list[str] = []
        two_rows = any(c.label for c in self.columns)
        for i, col in enumerate(self.columns):
            if col.label:
                sub.append(col.label)
                prev = self.columns[i - 1] if i else None
                if prev is not None and prev.label and prev.group == col.group:
                    top[-1] = HeaderCell(col.group, top[-1].colspan + 1)
                    continue
                top.append(HeaderCell(col.group))
            else:
                top.append(HeaderCell(col.group, rowspan=2 if two_rows else 1))
        return top, sub


def fmt_number(x: float | None, digits: int | None = None) -> str:
    """`digits` decimals with thousands separators; None digits = 4 significant digits; None = n/a."""
    if x is None:
        return NA
    if digits is None:
        s = f"{x:,.0f}" if abs(x) >= 1e4 else f"{x:.4g}"
    else:
        s = f"{x:,.{digits}f}"
    return s.lstrip("-") if float(s.replace(",", "")) == 0 else s


def fmt_value(v: Value, digits: int | None = None, interval: bool = True) -> str:
    """`0.42 [0.30, 0.55]`, or just the number when there is no interval, or n/a when undefined."""
    if v.value is None:
        return NA
    s = fmt_number(v.value, digits)
    if interval and (v.low is not None or v.high is not None):
        s += f" [{fmt_number(v.low, digits)}, {fmt_number(v.high, digits)}]"
    return s


def fmt_rank(rank: int | None) -> str:
    return NO_RANK if rank is None else str(rank)


def metric_columns(runs: list[Run], metrics: Sequence[MetricInfo]) -> list[MetricColumn]:
    """The main-table columns of the catalogue `metrics` that at least one of `runs` has a row for: each metric stored
    per split once per split, then those stored once per run."""
    shown = [m for m in metrics if m.table]
    cols = [MetricColumn(m.heading, split, metric=m.name, split=split, digits=m.digits, interval=m.interval)
            for m in shown if m.per_split for split in splits_of(runs, m.name)]
    cols += [MetricColumn(m.heading, metric=m.name, digits=m.digits, interval=m.interval) for m in shown if not m.per_split]
    return [c for c in cols if any(c.key in r.metrics for r in runs)]


def chunk_columns(cols: list[MetricColumn], limit: int = MAX_VALUE_COLUMNS) -> list[list[MetricColumn]]:
    """`cols` in order, cut into as few tables of at most `limit` columns as fit, of about equal width, without
    splitting a metric's splits apart (a metric with more splits than `limit` gets a table of its own)."""
    groups: list[list[MetricColumn]] = []
    for col in cols:
        if groups and groups[-1][-1].group == col.group:
            groups[-1].append(col)
        else:
            groups.append([col])
    fewest = _pack(groups, limit)
    balanced = _pack(groups, -(-len(cols) // max(len(fewest), 1)))
    return balanced if len(balanced) <= len(fewest) else fewest


def _pack(groups: list[list[MetricColumn]], limit: int) -> list[list[MetricColumn]]:
    chunks: list[list[MetricColumn]] = []
    for group in groups:
        if chunks and len(chunks[-1]) + len(group) <= limit:
            chunks[-1] += group
        else:
            chunks.append(list(group))
    return chunks


def method_cell(method: str, degenerate: bool) -> str:
    """The method's name, marked when the run (or a seed of the variant) is degenerate."""
    return f"{method} ({DEGENERATE})" if degenerate else method


def _chunk_title(task: str, cols: list[MetricColumn], what: str) -> str:
    names = list(dict.fromkeys(c.group for c in cols))
    return f"{task}: {', '.join(names)} ({what})"


def _degenerate_note(flagged: frozenset[int]) -> str:
    return f" {DEGENERATE_DEFINITION}" if flagged else ""


def results_tables(task: str, runs: list[Run], cols: list[MetricColumn]) -> list[TableView]:
    """One row per finished run; the metric columns split over tables of at most MAX_VALUE_COLUMNS."""
    head = [Column("Method", numeric=False), Column("Rank"), Column("Seed")]
    flagged = frozenset(i for i, r in enumerate(runs) if r.degenerate)
    note = "Value [95% bootstrap CI over prompts] where the run stored one; n/a = undefined." + _degenerate_note(flagged)
    return [TableView(
        _chunk_title(task, chunk, "per run"), head + chunk,
        [[method_cell(r.who, bool(r.degenerate)), fmt_rank(r.rank), str(r.seed)]
         + [fmt_value(r.get(c.metric, c.split), c.digits, c.interval) for c in chunk] for r in runs],
        note, flagged,
    ) for chunk in chunk_columns(cols)]


def seed_means_tables(task: str, variants: list[Variant], cols: list[MetricColumn]) -> list[TableView]:
    """One row per (method, rank): the mean over seeds, split as `results_tables`."""
    head = [Column("Method", numeric=False), Column("Rank"), Column("Seeds")]
    flagged = frozenset(i for i, v in enumerate(variants) if v.degenerate)
    note = ("Mean over seeds [95% Student-t interval across seeds]; with one seed, that run's own interval. "
            "'(k of n seeds)': the value is undefined for the other seeds." + _degenerate_note(flagged))
    return [TableView(
        _chunk_title(task, chunk, "mean over seeds"), head + chunk,
        [[method_cell(v.series, v.degenerate), fmt_rank(v.rank), str(len(v.runs))] + [_mean_cell(v, c) for c in chunk]
         for v in variants],
        note, flagged,
    ) for chunk in chunk_columns(cols)]


def _mean_cell(variant: Variant, col: MetricColumn) -> str:
    v = variant.mean(col.metric, col.split)
    cell = fmt_value(v, col.digits, col.interval)
    return cell + (f" ({v.n} of {len(variant.runs)} seeds)" if 0 < v.n < len(variant.runs) else "")


def long_table(task: str, runs: list[Run], covered: Iterable[MetricKey]) -> TableView:
    """Every stored metric row of `runs` not shown elsewhere, one line per value."""
    skip = set(covered)
    cols = [Column("Method", numeric=False), Column("Rank"), Column("Seed")] + [
        Column(name, numeric=False) for name in ("Metric", "Group", "Split")
    ] + [Column("Layer"), Column("Value"), Column("95% CI", numeric=False)]
    rows = []
    for r in runs:
        for key in sorted(r.metrics, key=_key_order):
            if key in skip:
                continue
            metric, group, split, layer = key
            v = r.metrics[key]
            ci = "" if v.low is None and v.high is None else f"[{fmt_number(v.low)}, {fmt_number(v.high)}]"
            rows.append([
                method_cell(r.who, bool(r.degenerate)), fmt_rank(r.rank), str(r.seed), metric, group or "", split or "",
                "" if layer is None else str(layer), fmt_number(v.value), ci,
            ])
    return TableView(f"{task}: all other metrics", cols, rows, "Every stored value not shown in the tables above.")


ERRORS_FILE = "errors.txt"
"""Beside the report: every unfinished run's whole error text (a traceback), which its table cell shortens to a line."""


def error_line(error: str | None) -> str:
    """The first line of a run's error, with a pointer to the whole text when there is more."""
    if not error:
        return ""
    first, *more = error.strip().splitlines() or [""]
    return f"{first} (full text: {ERRORS_FILE})" if more else first


def errors_text(runs: list[Run]) -> str:
    """Every run's whole error, under its id and identity."""
    return "".join(f"== {r.run_id}: {r.task} / {r.who} r={fmt_rank(r.rank)} / seed {r.seed} ({r.status})\n"
                   f"{r.error.strip()}\n\n" for r in runs if r.error)


def unfinished_table(runs: list[Run]) -> TableView:
    """Failed and still running (or interrupted) runs with the first line of their error message."""
    cols = [Column(n, numeric=False) for n in ("Task", "Method")] + [Column("Rank"), Column("Seed")] + [
        Column(n, numeric=False) for n in ("Status", "Error")
    ]
    rows = [[r.task, r.who, fmt_rank(r.rank), str(r.seed), r.status, error_line(r.error)] for r in runs]
    return TableView("Runs without results", cols, rows, "A run still 'running' was interrupted or is in progress.")


def _key_order(key: MetricKey) -> tuple:
    metric, group, split, layer = key
    return (metric, split or "", group or "", -1 if layer is None else layer)
