"""Assemble the report from the store: tables, plots, then markdown and HTML files."""

from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from .. import __version__
from .catalogue import task_data_sources, task_metrics
from ..store.sqlite import STORE_FILE
from .data import ReportData, load
from .extras import TABLES, WARNED
from .figures import task_plots
from .degenerate import DEFINITION as DEGENERATE_DEFINITION
from .render import ReportView, TaskSection, TopSection, render_html, render_markdown
from .verdict import verdict_sections
from .tables import (ERRORS_FILE, MetricColumn, errors_text, long_table, metric_columns, results_tables,
                     seed_means_tables, unfinished_table)

TopMaker = Callable[[ReportData, Path], list[TopSection]]
"""`(data, plots_dir) -> sections`: what the report shows first, right after its title, before any task."""

TOP_SECTIONS: list[TopMaker] = [verdict_sections]
"""Makers of the sections at the top of the report, in order (a maker returns [] when the store has nothing for it)."""

SOURCE_STAMP = ".report-source"
"""Beside the report: a digest of the store and the version it was built from (see `report_is_current`)."""

METRICS_CSV = "metrics.csv"
"""Beside the report: every stored metric value of the finished runs, one line each (the long tables in full)."""


@dataclass(frozen=True)
class ReportPaths:
    """The files `build_report` wrote."""

    html: Path
    markdown: Path
    plots: list[Path]
    csv: Path


def build_report(out_dir: str | Path) -> ReportPaths:
    """Read `out_dir/results.sqlite`, write report.html (self-contained), report.md, plots/*.png, metrics.csv (every
    value) and, when a run failed, errors.txt (the whole error texts the report shortens to a line)."""
    out_dir = Path(out_dir)
    data = load(out_dir)
    tasks = data.tasks()
    sections = [_task_section(data, task, slug, out_dir / "plots") for task, slug in zip(tasks, _slugs(tasks))]
    unfinished = data.unfinished()
    top = [section for make in TOP_SECTIONS for section in make(data, out_dir / "plots")]
    view = ReportView(
        description=data.experiment.get("description"),
        fingerprint=data.experiment.get("fingerprint"),
        store_path=data.store_path,
        n_runs=len(data.runs),
        n_finished=len(data.runs) - len(unfinished),
        unfinished=unfinished_table(unfinished) if unfinished else None,
        tasks=sections,
        top=top,
        version=__version__,
        csv=METRICS_CSV,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    plots = [p.path for s in [*top, *sections] for p in s.plots]
    paths = ReportPaths(out_dir / "report.html", out_dir / "report.md", plots, out_dir / METRICS_CSV)
    _write_csv(data, paths.csv)
    if any(r.error for r in unfinished):
        (out_dir / ERRORS_FILE).write_text(errors_text(unfinished), encoding="utf-8")
    paths.html.write_text(render_html(view), encoding="utf-8")
    paths.markdown.write_text(render_markdown(view, out_dir), encoding="utf-8")
    (out_dir / SOURCE_STAMP).write_text(_source_digest(out_dir), encoding="utf-8")
    return paths


def report_is_current(out_dir: str | Path) -> bool:
    """The report in `out_dir` was built by this version from the store as it is now (a re-run that ran nothing
    need not rebuild it; `lowrank-audit report` always does)."""
    out_dir = Path(out_dir)
    stamp = out_dir / SOURCE_STAMP
    return ((out_dir / "report.html").is_file() and stamp.is_file()
            and stamp.read_text(encoding="utf-8") == _source_digest(out_dir))


def _source_digest(out_dir: Path) -> str:
    digest = hashlib.sha256(__version__.encode())
    with (out_dir / STORE_FILE).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _task_section(data: ReportData, task: str, slug: str, plots_dir: Path) -> TaskSection:
    runs = data.finished(task)
    variants = data.variants(task)
    cols = metric_columns(runs, task_metrics(task))
    main = results_tables(task, runs, cols)
    if any(len(v.runs) > 1 for v in variants):
        main += seed_means_tables(task, variants, cols)
    tables = [t for make in TABLES for t in make(data, task)]
    return TaskSection(
        name=task,
        anchor=f"task-{slug}",
        main=main,
        tables=tables,
        definitions=_definitions(task, cols, any(r.degenerate for r in runs)),
        plots=task_plots(task, variants, plots_dir, slug),
        other=long_table(task, runs, covered=[c.key for c in cols]),
        warned=[t for make in WARNED for t in make(data, task)],
    )


def _definitions(task: str, cols: list[MetricColumn], degenerate: bool) -> list[tuple[str, str]]:
    """(heading, definition) of every metric in the task's main tables, from the catalogue, of 'degenerate' when a run
    is, and where the task's data came from."""
    shown = {c.metric for c in cols}
    out = [(m.heading, m.definition) for m in task_metrics(task) if m.name in shown and m.definition]
    return out + ([("degenerate", DEGENERATE_DEFINITION)] if degenerate else []) + task_data_sources(task)


def _write_csv(data: ReportData, path: Path) -> None:
    """Every metric value of every finished run, with the run's identity."""
    with path.open("w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["run_id", "task", "method", "rank", "seed", "metric", "group", "split", "layer", "value",
                      "ci_low", "ci_high"])
        for task in data.tasks():
            for r in data.finished(task):
                for (metric, group, split, layer), v in sorted(r.metrics.items(), key=lambda kv: repr(kv[0])):
                    out.writerow([r.run_id, r.task, r.method, r.rank, r.seed, metric, group, split, layer, v.value,
                                  v.low, v.high])


def _slugs(names: list[str]) -> list[str]:
    """File-name-safe, unique versions of task names."""
    slugs: list[str] = []
    for name in names:
        base = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "task"
        slug, i = base, 2
        while slug in slugs:
            slug, i = f"{base}-{i}", i + 1
        slugs.append(slug)
    return slugs
