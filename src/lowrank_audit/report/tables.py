"""Report tables as formatted strings, independent of the output format (markdown, HTML, terminal)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from .data import MetricKey, Run, Value, Variant, splits_of

NA = "n/a"
NO_RANK = "—"

# (metric, column heading, decimals): measured per split (summary row, group_name NULL) ...
_PER_SPLIT = (
    ("shift_recovered", "Shift recovered", 2),
    ("target_fit", "Target fit KL(q‖p), nats", 3),
    ("group_gap", "Group gap", 3),
    ("group_js", "Group JS", 4),
    ("accuracy", "Accuracy", 3),
    ("worst_group_accuracy", "Worst-group accuracy", 3),
    ("demographic_parity_difference", "DP difference", 3),
    ("equalized_odds_difference", "EO difference", 3),
    ("counterfactual_flip_rate", "Counterfactual flips", 3),
    ("toxicity_rate", "Toxicity rate (identity masked)", 3),
    ("toxicity_rate_unmasked", "Toxicity rate, unmasked", 3),
    ("expected_max_toxicity", "Expected max toxicity", 3),
    ("toxicity_mitigation", "Mitigation vs full", 2),
    ("pct_stereotype", "CrowS pct stereotype (0.5 = none)", 3),
    ("likelihood_difference", "CrowS likelihood diff", 2),
    ("stereotype_score", "StereoSet ss (0.5 = none)", 3),
    ("lm_score", "StereoSet lms", 3),
)
# ... and once per run (split NULL); the last field: show an interval (cost numbers have none).
_PER_RUN = (
    ("kl_to_full", "KL to full", 4, True),
    ("drift_neutral", "Drift on neutral text", 4, True),
    ("scorer_recall", "Scorer recall vs Perspective", 3, False),
    ("scorer_spearman", "Scorer Spearman vs Perspective", 3, False),
    ("trainable_params", "Trainable params", 0, False),
    ("train_seconds", "Train s", 1, False),
    ("seconds_per_step", "s/step", 3, False),
    ("peak_rss_mb", "Peak MB", 0, False),
)


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


def metric_columns(runs: list[Run]) -> list[MetricColumn]:
    """The main-table metric columns that at least one of `runs` has a row for."""
    cols = [
        MetricColumn(group, split, metric=metric, split=split, digits=digits)
        for metric, group, digits in _PER_SPLIT
        for split in splits_of(runs, metric)
    ]
    cols += [MetricColumn(group, metric=m, digits=d, interval=i) for m, group, d, i in _PER_RUN]
    return [c for c in cols if any(c.key in r.metrics for r in runs)]


def results_table(task: str, runs: list[Run], cols: list[MetricColumn]) -> TableView:
    """One row per finished run."""
    head = [Column("Method", numeric=False), Column("Rank"), Column("Seed")]
    rows = [[r.method, fmt_rank(r.rank), str(r.seed)] + [fmt_value(r.get(c.metric, c.split), c.digits, c.interval) for c in cols] for r in runs]
    return TableView(
        f"{task}: results per run", head + cols, rows,
        "Value [95% bootstrap CI over prompts] where the run stored one; n/a = undefined.",
    )


def seed_means_table(task: str, variants: list[Variant], cols: list[MetricColumn]) -> TableView:
    """One row per (method, rank): the mean over seeds."""
    head = [Column("Method", numeric=False), Column("Rank"), Column("Seeds")]
    rows = [[v.method, fmt_rank(v.rank), str(len(v.runs))] + [_mean_cell(v, c) for c in cols] for v in variants]
    return TableView(
        f"{task}: mean over seeds", head + cols, rows,
        "Mean over seeds [95% Student-t interval across seeds]; with one seed, that run's own interval. "
        "'(k of n seeds)': the value is undefined for the other seeds.",
    )


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
                r.method, fmt_rank(r.rank), str(r.seed), metric, group or "", split or "",
                "" if layer is None else str(layer), fmt_number(v.value), ci,
            ])
    return TableView(f"{task}: all other metrics", cols, rows, "Every stored value not shown in the tables above.")


def unfinished_table(runs: list[Run]) -> TableView:
    """Failed and still running (or interrupted) runs with their error message."""
    cols = [Column(n, numeric=False) for n in ("Task", "Method")] + [Column("Rank"), Column("Seed")] + [
        Column(n, numeric=False) for n in ("Status", "Error")
    ]
    rows = [[r.task, r.method, fmt_rank(r.rank), str(r.seed), r.status, r.error or ""] for r in runs]
    return TableView("Runs without results", cols, rows, "A run still 'running' was interrupted or is in progress.")


def _key_order(key: MetricKey) -> tuple:
    metric, group, split, layer = key
    return (metric, split or "", group or "", -1 if layer is None else layer)
