"""Figures of the `decisions` task: per-group score trajectories and reward vs fairness gap.

Reads the rows that task stores: `score_mean` per group with the step in `layer`, `cumulative_reward`,
`approval_gap`, `tpr_gap`; rows with split 'reference_policy' are the reference policy on the same seeds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from .data import Run, Value, Variant, aggregate
from .plots import Plot, _save

REFERENCE_SPLIT = "reference_policy"
_STYLES = {"base": ":", "full": "--"}
_GAPS = (("approval_gap", "approval-rate gap (max − min over groups)"),
         ("tpr_gap", "true-positive-rate gap (max − min over groups)"))


def decision_plots(task: str, variants: list[Variant], plots_dir: Path, slug: str) -> list[Plot]:
    """Score trajectories and the reward-vs-gap scatter, where the task's runs have `score_mean` rows."""
    runs = [r for v in variants for r in v.runs]
    groups = sorted({k[1] for r in runs for k in r.metrics if k[0] == "score_mean" and k[1] and k[2] is None})
    if not groups:
        return []
    steps = sorted({k[3] for r in runs for k in r.metrics if k[0] == "score_mean" and k[3] is not None})
    plots = []
    path = plots_dir / f"{slug}-score-trajectories.png"
    _trajectory_figure(path, f"{task}: mean credit score per group over the episode", variants, groups, steps)
    plots.append(Plot(path, f"{task}: score trajectories",
                      "Mean score of each group at each step (mean over evaluation episodes, then over seeds), "
                      "one line per method; black dashed: the reference policy on the same seeds."))
    path = plots_dir / f"{slug}-reward-vs-gap.png"
    _scatter_figure(path, f"{task}: bank reward vs fairness gap", variants)
    plots.append(Plot(path, f"{task}: reward vs fairness gap",
                      "Cumulative reward against the approval-rate and true-positive-rate gaps between groups; "
                      "error bars: 95% interval (bootstrap across episodes for one seed, Student-t across seeds); "
                      "black star: the reference policy."))
    return plots


def _mean(runs: list[Run], metric: str, split: str | None = None, group: str | None = None,
          layer: int | None = None) -> Value:
    return aggregate(r.get(metric, split, group, layer) for r in runs)


def _trajectory_figure(path: Path, title: str, variants: list[Variant], groups: list[str], steps: list[int]) -> None:
    fig = Figure(figsize=(5.0 * len(groups) + 2.5, 4.2), layout="constrained")
    axes = fig.subplots(1, len(groups), squeeze=False, sharey=True)[0]
    reference = [variants[0].runs[0]]
    for ax, group in zip(axes, groups):
        for i, v in enumerate(variants):
            y = [_mean(v.runs, "score_mean", None, group, t).value for t in steps]
            ax.plot(steps, [np.nan if x is None else x for x in y], color=f"C{i}", marker="o", markersize=3,
                    linestyle=_STYLES.get(v.method, "-"), label=v.label)
        y = [_mean(reference, "score_mean", REFERENCE_SPLIT, group, t).value for t in steps]
        if any(x is not None for x in y):
            ax.plot(steps, [np.nan if x is None else x for x in y], color="black", linestyle="--", linewidth=2,
                    label="reference policy")
        ax.set_title(group)
        ax.set_xlabel("step")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mean credit score")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)


def _scatter_figure(path: Path, title: str, variants: list[Variant]) -> None:
    fig = Figure(figsize=(12.5, 4.6), layout="constrained")
    axes = fig.subplots(1, len(_GAPS), squeeze=False)[0]
    reference = [variants[0].runs[0]]
    for ax, (gap, label) in zip(axes, _GAPS):
        for i, v in enumerate(variants):
            _point(ax, _mean(v.runs, gap), _mean(v.runs, "cumulative_reward"), f"C{i}", "o", v.label)
        _point(ax, _mean(reference, gap, REFERENCE_SPLIT), _mean(reference, "cumulative_reward", REFERENCE_SPLIT),
               "black", "*", "reference policy")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("cumulative reward (bank profit)")
    axes[-1].legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)


def _point(ax, x: Value, y: Value, color: str, marker: str, label: str) -> None:
    """One variant: a marker with its intervals on both axes (skipped when undefined)."""
    if x.value is None or y.value is None:
        return
    ax.errorbar([x.value], [y.value], xerr=_err(x), yerr=_err(y), color=color, marker=marker,
                markersize=12 if marker == "*" else 7, capsize=3, linestyle="none", label=label)


def _err(v: Value) -> list[list[float]] | None:
    """Error bar lengths below and above; a percentile interval may exclude its estimate, so clip at 0."""
    if v.low is None or v.high is None or not np.isfinite([v.low, v.high]).all():
        return None
    return [[max(0.0, v.value - v.low)], [max(0.0, v.high - v.value)]]
