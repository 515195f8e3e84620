"""Assemble the report from the store: tables, plots, then markdown and HTML files."""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from .catalogue import task_metrics
from .data import ReportData, load
from .extras import TABLES, WARNED
from .figures import task_plots
from .render import ReportView, TaskSection, VerdictSection, render_html, render_markdown
from .verdict import lr_plot, task_verdict
from .tables import (ERRORS_FILE, errors_text, long_table, metric_columns, results_table, seed_means_table,
                     unfinished_table)

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
    verdicts = [_verdict_section(data, task, slug, out_dir / "plots") for task, slug in zip(tasks, _slugs(tasks))]
    view = ReportView(
        description=data.experiment.get("description"),
        fingerprint=data.experiment.get("fingerprint"),
        store_path=data.store_path,
        n_runs=len(data.runs),
        n_finished=len(data.runs) - len(unfinished),
        unfinished=unfinished_table(unfinished) if unfinished else None,
        tasks=sections,
        version=__version__,
        csv=METRICS_CSV,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        verdicts=[v for v in verdicts if v is not None],
    )
    plots = [v.plot.path for v in view.verdicts if v.plot] + [p.path for s in sections for p in s.plots]
    paths = ReportPaths(out_dir / "report.html", out_dir / "report.md", plots, out_dir / METRICS_CSV)
    _write_csv(data, paths.csv)
    if any(r.error for r in unfinished):
        (out_dir / ERRORS_FILE).write_text(errors_text(unfinished), encoding="utf-8")
    paths.html.write_text(render_html(view), encoding="utf-8")
    paths.markdown.write_text(render_markdown(view, out_dir), encoding="utf-8")
    return paths


def _verdict_section(data: ReportData, task: str, slug: str, plots_dir: Path) -> VerdictSection | None:
    verdict = task_verdict(data, task)
    if verdict is None:
        return None
    return VerdictSection(task, verdict.reference, [m.sentence() for m in verdict.methods], verdict.table,
                          lr_plot(data, task, plots_dir, slug))


def _task_section(data: ReportData, task: str, slug: str, plots_dir: Path) -> TaskSection:
    runs = data.finished(task)
    variants = data.variants(task)
    cols = metric_columns(runs, task_metrics(task))
    tables = [results_table(task, runs, cols)]
    if any(len(v.runs) > 1 for v in variants):
        tables.append(seed_means_table(task, variants, cols))
    tables += [t for make in TABLES for t in make(data, task)]
    return TaskSection(
        name=task,
        anchor=f"task-{slug}",
        tables=tables,
        plots=task_plots(task, variants, plots_dir, slug),
        other=long_table(task, runs, covered=[c.key for c in cols]),
        warned=[t for make in WARNED for t in make(data, task)],
    )


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
