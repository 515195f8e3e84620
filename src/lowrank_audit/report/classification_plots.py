"""Figures of the `classification` task: accuracy vs fairness gap per method and rank; accuracy per group."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .data import Variant, splits_of
from .plots import Plot, _save

_GAPS = (
    ("demographic_parity_difference", "demographic-parity difference"),
    ("equalized_odds_difference", "equalized-odds difference"),
    ("counterfactual_flip_rate", "counterfactual flip rate"),
)
_REFERENCE_MARKERS = {"base": ("*", "black"), "full": ("X", "crimson")}


def classification_plots(task: str, variants: list[Variant], plots_dir: Path, slug: str) -> list[Plot]:
    """The accuracy/fairness scatter and the per-group accuracy bars, where the runs have those metrics."""
    runs = [r for v in variants for r in v.runs]
    splits = splits_of(runs, "accuracy")
    if not splits or not splits_of(runs, "demographic_parity_difference"):
        return []
    split = "test" if "test" in splits else splits[0]
    plots = []
    path = plots_dir / f"{slug}-accuracy-vs-gap.png"
    title = f"{task}: accuracy vs fairness gap ({split})"
    if accuracy_gap_figure(path, title, variants, split):
        plots.append(Plot(path, title, "One point per method and rank (mean over seeds; error bars: 95% interval of "
                                       "accuracy). Star: base model; X: full fine-tuning; lines join a method's ranks. "
                                       "Up and to the left is accurate and fair."))
    path = plots_dir / f"{slug}-group-accuracy.png"
    title = f"{task}: accuracy per group ({split})"
    if group_accuracy_figure(path, title, variants, split):
        plots.append(Plot(path, title, "Mean over seeds of the accuracy within each group, one bar per method and rank."))
    return plots


def accuracy_gap_figure(path: Path, title: str, variants: list[Variant], split: str) -> bool:
    """One panel per gap metric present: x = gap, y = accuracy, a point per variant; False if nothing to draw."""
    gaps = [(m, label) for m, label in _GAPS if any(v.mean(m, split).value is not None for v in variants)]
    if not gaps:
        return False
    fig = Figure(figsize=(4.8 * len(gaps) + 2.2, 4.4), layout="constrained")
    axes = fig.subplots(1, len(gaps), squeeze=False)[0]
    ranked = sorted({v.series for v in variants if v.rank is not None})
    for ax, (metric, label) in zip(axes, gaps):
        for j, method in enumerate(ranked):
            points = [(v, v.mean(metric, split), v.mean("accuracy", split)) for v in variants if v.series == method]
            points = [(v, g, a) for v, g, a in sorted(points, key=lambda p: p[0].rank) if g.value is not None and a.value is not None]
            if not points:
                continue
            x, y = [g.value for _, g, _ in points], [a.value for _, _, a in points]
            ax.plot(x, y, color=f"C{j}", linewidth=1, alpha=0.6)
            ax.errorbar(x, y, yerr=_yerr([a for _, _, a in points]), color=f"C{j}", marker="o", linestyle="none",
                        capsize=2, label=method, zorder=3)
            for v, gx, ay in zip([v for v, _, _ in points], x, y):
                ax.annotate(f"r={v.rank}", (gx, ay), textcoords="offset points", xytext=(4, 4), fontsize=7)
        for v in variants:
            if v.rank is not None:
                continue
            g, a = v.mean(metric, split), v.mean("accuracy", split)
            if g.value is None or a.value is None:
                continue
            marker, color = _REFERENCE_MARKERS.get(v.method, ("P", "dimgray"))
            ax.errorbar([g.value], [a.value], yerr=_yerr([a]), color=color, marker=marker, markersize=14,
                        linestyle="none", capsize=2, label=v.label, alpha=0.8, zorder=2)
        ax.set_xlabel(f"{label} (lower is fairer)")
        ax.set_ylabel("accuracy")
        ax.set_title(label)
        ax.grid(alpha=0.3)
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def _yerr(values: list) -> np.ndarray:
    """Asymmetric error bars from Values' intervals (0 where a Value has none)."""
    low = [v.value - v.low if v.low is not None else 0.0 for v in values]
    high = [v.high - v.value if v.high is not None else 0.0 for v in values]
    return np.array([low, high])


def group_accuracy_figure(path: Path, title: str, variants: list[Variant], split: str) -> bool:
    """Grouped bars: one group of bars per sensitive group, one bar per variant; False without group rows."""
    groups = sorted({name for v in variants for r in v.runs for metric, name, s, _ in r.metrics
                     if metric == "group_accuracy" and s == split and name is not None})
    if not groups:
        return False
    width = 0.8 / len(variants)
    fig = Figure(figsize=(max(7.0, 0.22 * len(groups) * len(variants) + 3.0), 4.8), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(groups))
    for i, v in enumerate(variants):
        acc = [v.mean("group_accuracy", split, g).value for g in groups]
        ax.bar(x + (i - (len(variants) - 1) / 2) * width, [np.nan if a is None else a for a in acc], width,
               label=v.label, color=f"C{i}")
    ax.set_xticks(x, labels=groups, rotation=45, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy within the group")
    ax.grid(alpha=0.3, axis="y")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True
