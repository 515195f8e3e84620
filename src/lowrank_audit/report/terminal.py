"""A compact rich table of all runs, for the terminal at the end of a sweep."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text

from .data import Run, load, run_order, splits_of
from .tables import fmt_number, fmt_rank

_STATUS_STYLE = {"finished": "green", "failed": "bold red", "running": "yellow"}


def summary_table(out_dir: str | Path) -> Table:
    """One row per run: identity, status, shift recovered per split, train group gap, KL to full, drift, cost."""
    runs = sorted(load(out_dir).runs, key=lambda r: (r.task, run_order(r)))
    cols: list[tuple[str, str, str | None, int]] = [  # heading, metric, split, decimals
        (f"SR {s}", "shift_recovered", s, 2) for s in splits_of(runs, "shift_recovered")
    ]
    cols += [
        ("gap train", "group_gap", "train", 3),
        ("KL to full", "kl_to_full", None, 4),
        ("drift", "drift_neutral", None, 4),
        ("forgetting", "forgetting", None, 4),
        ("intruders", "weight_intruders", None, 0),
        ("params", "trainable_params", None, 0),
        ("s/step", "seconds_per_step", None, 3),
    ]
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


def _identity(run: Run) -> list[Text]:
    return [Text(run.task), Text(run.method), Text(fmt_rank(run.rank)), Text(str(run.seed)),
            Text(run.status, style=_STATUS_STYLE.get(run.status, ""))]


def _cell(run: Run, metric: str, split: str | None, digits: int) -> Text:
    """The value, n/a when undefined, empty for runs without results."""
    if run.status != "finished":
        return Text("")
    return Text(fmt_number(run.get(metric, split).value, digits))
