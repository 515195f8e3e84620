"""Read a results store into plain records and average them over seeds (no pandas, no torch)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from scipy import stats

from ..errors import AuditError
from ..records import Selection
from ..store import Store
from ..store.sqlite import STORE_FILE
from .degenerate import mark_degenerate

KNOWN_SPLITS = ("train", "heldout_templates", "heldout_terms", "heldout_both")

MetricKey = tuple[str, str | None, str | None, int | None]  # metric, group_name, split, layer


@dataclass(frozen=True)
class Value:
    """A number (None = undefined) with an optional interval; `n` = how many seeds it averages."""

    value: float | None
    low: float | None = None
    high: float | None = None
    n: int = 1


@dataclass
class Run:
    """One row of the runs table with its metrics keyed by (metric, group_name, split, layer)."""

    run_id: str
    task: str
    method: str
    rank: int | None
    seed: int
    status: str
    error: str | None
    metrics: dict[MetricKey, Value] = field(default_factory=dict)
    tuning: bool = False
    """A grid point tuning did not choose (or has not chosen yet): shown only where tuning is, never as the method."""
    config: dict[str, Any] = field(default_factory=dict)
    name: str | None = None
    """An audited adapter's name (None for a sweep's runs): part of its identity, never pooled with another's."""
    notes: tuple[str, ...] = ()
    """What the report says beside an audited run (a warning, why a metric is not shown)."""
    degenerate: str = ""
    """Why the run is degenerate (report/degenerate.py), '' when it is not."""

    def option(self, name: str) -> Any:
        """A method option as the run was configured (None: not recorded)."""
        method = self.config.get("method")
        return method.get("options", {}).get(name) if isinstance(method, dict) else None

    @property
    def identity(self) -> tuple[str, int | None, str | None]:
        """What makes runs the same variant, whose seeds are averaged: method, rank and (audits) adapter name."""
        return self.method, self.rank, self.name

    @property
    def who(self) -> str:
        """The method, with an audited adapter's name in front."""
        return self.method if self.name is None else f"{self.name} ({self.method})"

    def get(self, metric: str, split: str | None = None, group: str | None = None, layer: int | None = None) -> Value:
        """The stored value, or an undefined Value if the run has no such row."""
        return self.metrics.get((metric, group, split, layer), Value(None, n=0))


@dataclass
class Variant:
    """All finished runs of one (task, method, rank, adapter name): the unit that is averaged over seeds."""

    method: str
    rank: int | None
    runs: list[Run]
    name: str | None = None

    @property
    def series(self) -> str:
        """What a plot draws as one line across ranks: a sweep's method, or one audited adapter."""
        return self.runs[0].who

    @property
    def label(self) -> str:
        return self.series if self.rank is None else f"{self.series} r={self.rank}"

    @property
    def degenerate(self) -> bool:
        """Some seed of it is degenerate (report/degenerate.py)."""
        return any(r.degenerate for r in self.runs)

    def mean(self, metric: str, split: str | None = None, group: str | None = None) -> Value:
        """Mean over seeds (see `aggregate`)."""
        return aggregate(r.get(metric, split, group) for r in self.runs)


@dataclass
class ReportData:
    """Everything the report shows, read once from the store."""

    store_path: Path
    experiment: dict[str, str]
    runs: list[Run]
    selections: list[Selection] = field(default_factory=list)

    def tasks(self) -> list[str]:
        return sorted({r.task for r in self.runs})

    def finished(self, task: str) -> list[Run]:
        """Finished runs of a task in display order (method, rank, seed), without the grid points tuning did not
        choose (they are the tuning's, `tuning_runs`)."""
        return sorted((r for r in self.runs if r.task == task and r.status == "finished" and not r.tuning),
                      key=run_order)

    def tuning_runs(self, task: str) -> list[Run]:
        """Every grid run of a task's tuning, chosen or not, in display order."""
        grid = {c.run_id for s in self.selections if s.task == task for c in s.candidates}
        return sorted((r for r in self.runs if r.run_id in grid), key=run_order)

    def unfinished(self) -> list[Run]:
        return [r for r in self.runs if r.status != "finished"]

    def variants(self, task: str) -> list[Variant]:
        """Finished runs of a task grouped by (method, rank, adapter name), in display order."""
        groups: dict[tuple[str, int | None, str | None], list[Run]] = {}
        for run in self.finished(task):
            groups.setdefault(run.identity, []).append(run)
        return [Variant(m, k, runs, name) for (m, k, name), runs in groups.items()]


def run_order(run: Run) -> tuple:
    """Base first, then full fine-tuning, other unranked methods, then ranked methods by rank."""
    first = {"base": 0, "full": 1}.get(run.method, 2 if run.rank is None else 3)
    return (first, run.method, run.rank if run.rank is not None else -1, run.name or "", run.seed)


def aggregate(values: Iterable[Value]) -> Value:
    """Mean over seeds of the defined values.

    One seed keeps its own (bootstrap) interval; several seeds get a 95% Student-t interval of the mean
    across seeds. All undefined gives an undefined Value with n=0.
    """
    defined = [v for v in values if v.value is not None]
    if not defined:
        return Value(None, n=0)
    if len(defined) == 1:
        return defined[0]
    x = np.array([v.value for v in defined], dtype=np.float64)
    mean = float(x.mean())
    half = float(stats.t.ppf(0.975, len(x) - 1)) * float(x.std(ddof=1)) / math.sqrt(len(x))
    return Value(mean, mean - half, mean + half, n=len(x))


def splits_of(runs: Iterable[Run], metric: str) -> list[str]:
    """The splits a metric was measured on: the debias splits first, then any others alphabetically."""
    found = {key[2] for run in runs for key in run.metrics if key[0] == metric and key[2] is not None}
    return [s for s in KNOWN_SPLITS if s in found] + sorted(found - set(KNOWN_SPLITS))


def load(out_dir: str | Path) -> ReportData:
    """Read runs and metrics of `out_dir/results.sqlite`; AuditError if there is no store or no run."""
    out_dir = Path(out_dir)
    path = out_dir / STORE_FILE
    if not path.is_file():
        raise AuditError(
            f"no results store in {out_dir} (expected {path}). Run an experiment with --out {out_dir} first, "
            "or pass the folder that holds results.sqlite."
        )
    store = Store(path)
    try:
        experiment = store.experiment()
        run_rows = store.runs()
        metric_rows = store.metrics()
        selections = store.selections()
    finally:
        store.close()
    if not run_rows:
        raise AuditError(f"the results store {path} has no runs yet. Run an experiment with --out {out_dir} first.")
    chosen = {s.chosen.run_id for s in selections if s.chosen is not None}
    runs = {row["run_id"]: _run(row, chosen) for row in run_rows}
    for m in metric_rows:
        run = runs.get(m["run_id"])
        if run is not None:
            run.metrics[(m["metric"], m["group_name"], m["split"], m["layer"])] = Value(m["value"], m["ci_low"], m["ci_high"])
    mark_degenerate(runs.values())
    return ReportData(path, experiment, list(runs.values()), selections)


def _run(row: dict[str, Any], chosen: set[str]) -> Run:
    config = json.loads(row["config_json"] or "{}")
    audit = config.get("audit") or {}
    return Run(
        run_id=row["run_id"], task=row["task"], method=row["method"], rank=row["rank"], seed=row["seed"],
        status=row["status"], error=row["error"], tuning=row.get("family") is not None and row["run_id"] not in chosen,
        config=config, name=audit.get("name"), notes=tuple(config.get("notes") or ()),
    )
