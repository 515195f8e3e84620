"""Assemble the report from the store: tables, plots, then markdown and HTML files."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .. import __version__
from .data import ReportData, load
from .figures import task_plots
from .scorer_bias import scorer_bias_keys, scorer_bias_table
from .render import ReportView, TaskSection, render_html, render_markdown
from .tables import long_table, metric_columns, results_table, seed_means_table, unfinished_table
from .toxicity_pairs import toxicity_pair_table
from .toxicity_plots import toxic_sample_tables


@dataclass(frozen=True)
class ReportPaths:
    """The files `build_report` wrote."""

    html: Path
    markdown: Path
    plots: list[Path]


def build_report(out_dir: str | Path) -> ReportPaths:
    """Read `out_dir/results.sqlite`, write report.html (self-contained), report.md and plots/*.png."""
    out_dir = Path(out_dir)
    data = load(out_dir)
    tasks = data.tasks()
    sections = [_task_section(data, task, slug, out_dir / "plots") for task, slug in zip(tasks, _slugs(tasks))]
    unfinished = data.unfinished()
    view = ReportView(
        description=data.experiment.get("description"),
        fingerprint=data.experiment.get("fingerprint"),
        store_path=data.store_path,
        n_runs=len(data.runs),
        n_finished=len(data.runs) - len(unfinished),
        unfinished=unfinished_table(unfinished) if unfinished else None,
        tasks=sections,
        version=__version__,
        generated=datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    )
    paths = ReportPaths(out_dir / "report.html", out_dir / "report.md", [p.path for s in sections for p in s.plots])
    paths.html.write_text(render_html(view), encoding="utf-8")
    paths.markdown.write_text(render_markdown(view, out_dir), encoding="utf-8")
    return paths


def _task_section(data: ReportData, task: str, slug: str, plots_dir: Path) -> TaskSection:
    runs = data.finished(task)
    variants = data.variants(task)
    cols = metric_columns(runs)
    tables = [results_table(task, runs, cols)]
    if any(len(v.runs) > 1 for v in variants):
        tables.append(seed_means_table(task, variants, cols))
    pairs = toxicity_pair_table(data, task)
    if pairs is not None:
        tables.append(pairs)
    bias = scorer_bias_table(task, runs)
    if bias is not None:
        tables.append(bias)
    return TaskSection(
        name=task,
        anchor=f"task-{slug}",
        tables=tables,
        plots=task_plots(task, variants, plots_dir, slug),
        other=long_table(task, runs, covered=[c.key for c in cols] + scorer_bias_keys(runs)),
        warned=toxic_sample_tables(data, task),
    )


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
