"""Figures and sample tables of the `toxicity` task: rates per identity group, vs rank, most toxic completions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from ..store import Store
from .data import ReportData, Variant, splits_of
from .plots import Panel, Plot, Series, _save, rank_caption, rank_figure
from .tables import Column, TableView, fmt_number

TOP_SAMPLES = 5
_MITIGATION = (" Mitigation = (tox_base − tox_m) / (tox_base − tox_full); absent where the base is not measurably "
               "more toxic than the full fine-tune.")


def toxicity_plots(task: str, variants: list[Variant], plots_dir: Path, slug: str) -> list[Plot]:
    """Toxicity rate and mitigation vs rank, and the rate per identity group, where the runs have them."""
    runs = [r for v in variants for r in v.runs]
    splits = splits_of(runs, "toxicity_rate")
    if not splits:
        return []
    plots = []
    path = plots_dir / f"{slug}-toxicity-vs-rank.png"
    title = f"{task}: toxicity vs rank"
    panels = [
        Panel("Toxicity rate", "share of completions with score >= threshold",
              tuple(Series(s, "toxicity_rate", s) for s in splits)),
        Panel("Mitigation vs full fine-tuning", r"$(\mathrm{tox}_{base} - \mathrm{tox}_m)\,/\,(\mathrm{tox}_{base} - \mathrm{tox}_{full})$",
              tuple(Series(s, "toxicity_mitigation", s) for s in splits_of(runs, "toxicity_mitigation"))),
    ]
    if rank_figure(path, title, panels, variants):
        plots.append(Plot(path, title, rank_caption(variants, [s for p in panels for s in p.series]) + _MITIGATION))
    split = "heldout" if "heldout" in splits else splits[0]
    path = plots_dir / f"{slug}-toxicity-by-group.png"
    title = f"{task}: toxicity rate per identity group ({split})"
    if group_bars_figure(path, title, variants, "toxicity_rate", split):
        plots.append(Plot(path, title, "Share of sampled completions scored toxic, per identity group; one bar per "
                                       "method and rank (mean over seeds), error bars = 95% interval."))
    return plots


def group_bars_figure(path: Path, title: str, variants: list[Variant], metric: str, split: str) -> bool:
    """Grouped bars: x = identity group, one bar per variant, with interval error bars; False if no data."""
    groups = sorted({key[1] for v in variants for r in v.runs for key in r.metrics
                     if key[0] == metric and key[2] == split and key[1] is not None})
    if not groups:
        return False
    fig = Figure(figsize=(max(7.0, 0.45 * len(groups) * max(1, len(variants)) ** 0.5 + 3.0), 4.8), layout="constrained")
    ax = fig.subplots()
    width = 0.8 / len(variants)
    x = np.arange(len(groups))
    for j, v in enumerate(variants):
        vals = [v.mean(metric, split, g) for g in groups]
        y = np.array([np.nan if m.value is None else m.value for m in vals])
        low = np.array([0.0 if m.value is None or m.low is None else m.value - m.low for m in vals])
        high = np.array([0.0 if m.value is None or m.high is None else m.high - m.value for m in vals])
        ax.bar(x + (j - (len(variants) - 1) / 2) * width, y, width, yerr=[low, high], capsize=2,
               color=f"C{j % 10}", label=v.label)
    ax.set_xticks(x, labels=groups, rotation=35, ha="right")
    ax.set_ylabel(f"{metric.replace('_', ' ')}")
    ax.set_ylim(bottom=0.0)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def toxic_sample_tables(data: ReportData, task: str, k: int = TOP_SAMPLES) -> list[TableView]:
    """Per method and rank (its first seed): the k highest-scored sampled completions (raw text; renderers escape)."""
    store = Store(data.store_path)
    try:
        tables = []
        for v in data.variants(task):
            run = v.runs[0]
            rows = store.samples(run.run_id, kind="eval")[:k]
            if not rows:
                continue
            tables.append(TableView(
                f"{task}: most toxic completions, {v.label} (seed {run.seed})",
                [Column("Score"), Column("Group", numeric=False), Column("Prompt", numeric=False),
                 Column("Completion", numeric=False)],
                [[fmt_number(r["score"], 3), r["group_name"] or "", r["prompt"], r["completion"]] for r in rows],
            ))
        return tables
    finally:
        store.close()
