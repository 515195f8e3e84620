"""Report figures as PNG files (matplotlib Figure + Agg canvas, no pyplot global state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .data import Variant, splits_of

_MARKERS = ("o", "s", "^", "D", "v")
_METHOD_STYLES = ("-", (0, (6, 2)), (0, (1, 1.5)))
_HLINE_STYLES = {"base": ":", "full": "--"}
_OTHER_HLINE_STYLES = ("-.", (0, (8, 2, 1, 2, 1, 2)), (0, (4, 4)))
_RANK_CAPTION = (
    "Markers: ranked methods, mean over seeds, error bars = 95% interval (bootstrap over prompts for one seed, "
    "Student-t across seeds otherwise). Dashed line: full fine-tuning; dotted line: base model; "
    "shaded band: their interval. x axis: rank on a log2 scale."
)


@dataclass(frozen=True)
class Plot:
    """A written figure with the text shown next to it."""

    path: Path
    title: str
    caption: str


@dataclass(frozen=True)
class Series:
    """One metric at one split (None = per-run metric), drawn in one colour."""

    label: str
    metric: str
    split: str | None = None


@dataclass(frozen=True)
class Panel:
    title: str
    ylabel: str
    series: tuple[Series, ...]


def rank_plots(task: str, variants: list[Variant], plots_dir: Path, slug: str) -> list[Plot]:
    """Shift, gap and divergence vs rank, and category mass per group, where the task's runs have them."""
    runs = [r for v in variants for r in v.runs]
    sr = tuple(Series(s, "shift_recovered", s) for s in splits_of(runs, "shift_recovered"))
    gap = tuple(Series(s, "group_gap", s) for s in splits_of(runs, "group_gap"))
    specs = [
        ("shift-recovered", f"{task}: shift recovered vs rank",
         [Panel("Shift recovered", "shift recovered (1 = target shift, 0 = base)", sr)]),
        ("group-gap", f"{task}: group gap vs rank",
         [Panel("Group gap", "group gap (mean over axis/category)", gap)]),
        ("divergence", f"{task}: distance to full fine-tuning and drift vs rank", [
            Panel("KL to full fine-tuning", "mean per-token KL(p_full ‖ p_m), nats", (Series("KL to full", "kl_to_full"),)),
            Panel("Drift on neutral text", "mean per-token KL(p_base ‖ p_m), nats", (Series("drift", "drift_neutral"),)),
        ]),
    ]
    plots = []
    for name, title, panels in specs:
        path = plots_dir / f"{slug}-{name}.png"
        if rank_figure(path, title, panels, variants):
            plots.append(Plot(path, title, _RANK_CAPTION))
    mass_splits = splits_of(runs, "category_mass")
    if mass_splits:
        split = "heldout_templates" if "heldout_templates" in mass_splits else mass_splits[0]
        path = plots_dir / f"{slug}-category-mass.png"
        title = f"{task}: probability mass per attribute category ({split})"
        if category_mass_figure(path, title, variants, split):
            plots.append(Plot(path, title, "Mean over seeds of the next-token mass per category, per identity group; "
                                           "rows: method and group, one panel per axis."))
    return plots


def rank_figure(path: Path, title: str, panels: list[Panel], variants: list[Variant]) -> bool:
    """Metrics vs rank, one panel each; False (nothing written) without ranked runs or data."""
    if not any(v.rank is not None for v in variants):
        return False
    panels = [p for p in panels if any(v.mean(s.metric, s.split).value is not None for s in p.series for v in variants)]
    if not panels:
        return False
    fig = Figure(figsize=(6.5 * len(panels) + 2.0, 4.6), layout="constrained")
    for ax, panel in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        _rank_panel(ax, panel, variants)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def _rank_panel(ax, panel: Panel, variants: list[Variant]) -> None:
    ranked_methods = sorted({v.series for v in variants if v.rank is not None})
    unranked = [v for v in variants if v.rank is None]
    other_styles = iter(_OTHER_HLINE_STYLES * len(unranked))
    hline_styles = {v.method: _HLINE_STYLES.get(v.method) or next(other_styles) for v in unranked}
    for i, series in enumerate(panel.series):
        color = f"C{i}"
        suffix = f" · {series.label}" if len(panel.series) > 1 else ""
        dodge = 2 ** (0.03 * (i - (len(panel.series) - 1) / 2))  # keep error bars of splits apart
        for j, method in enumerate(ranked_methods):
            points = [(v.rank, v.mean(series.metric, series.split)) for v in variants if v.series == method and v.rank is not None]
            points = [(r, m) for r, m in points if m.value is not None]
            if not points:
                continue
            x = [r * dodge for r, _ in points]
            y = np.array([m.value for _, m in points])
            low = np.array([m.value - m.low if m.low is not None else 0.0 for _, m in points])
            high = np.array([m.high - m.value if m.high is not None else 0.0 for _, m in points])
            ax.errorbar(x, y, yerr=[low, high], color=color, marker=_MARKERS[j % len(_MARKERS)],
                        linestyle=_METHOD_STYLES[j % len(_METHOD_STYLES)], capsize=3, label=f"{method}{suffix}")
        for v in unranked:
            m = v.mean(series.metric, series.split)
            if m.value is None:
                continue
            ax.axhline(m.value, color=color, linestyle=hline_styles[v.method], linewidth=1.6, label=f"{v.label}{suffix}")
            if m.low is not None and m.high is not None:
                ax.axhspan(m.low, m.high, color=color, alpha=0.08, linewidth=0)
    ranks = sorted({v.rank for v in variants if v.rank is not None})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, labels=[str(r) for r in ranks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(ranks[0] / 1.6, ranks[-1] * 1.6)
    ax.set_xlabel("rank (log2 scale)")
    ax.set_ylabel(panel.ylabel)
    ax.set_title(panel.title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)


def category_mass_figure(path: Path, title: str, variants: list[Variant], split: str) -> bool:
    """Heatmap per axis of mass[method · group, category] from 'axis/group/category' rows of one split."""
    names = [
        name.split("/") for v in variants for r in v.runs for metric, name, s, _ in r.metrics
        if metric == "category_mass" and s == split and name and name.count("/") == 2
    ]
    layout = {  # axis -> (groups, categories)
        axis: (sorted({g for a, g, _ in names if a == axis}), sorted({c for a, _, c in names if a == axis}))
        for axis in sorted({a for a, _, _ in names})
    }
    if not layout:
        return False
    heights = [len(variants) * len(groups) for groups, _ in layout.values()]
    width = max(7.0, 1.1 * max(len(c) for _, c in layout.values()) + 4.0)
    fig = Figure(figsize=(width, 0.34 * sum(heights) + 1.6 * len(layout) + 0.6), layout="constrained")
    axes = fig.subplots(len(layout), 1, squeeze=False, height_ratios=[h + 3 for h in heights])[:, 0]
    for ax, (axis, (groups, cats)) in zip(axes, layout.items()):
        rows = [(v, g) for v in variants for g in groups]
        grid = np.array([[_or_nan(v.mean("category_mass", split, f"{axis}/{g}/{c}").value) for c in cats] for v, g in rows])
        top = float(np.nanmax(grid)) if np.isfinite(grid).any() else 1.0
        im = ax.imshow(grid, cmap="viridis", vmin=0.0, vmax=top or 1.0, aspect="auto")
        for (i, j), x in np.ndenumerate(grid):
            text = "n/a" if np.isnan(x) else f"{x:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if np.isfinite(x) and x > 0.6 * top else "white")
        for k in range(1, len(variants)):
            ax.axhline(k * len(groups) - 0.5, color="white", linewidth=2.5)
        ax.set_xticks(range(len(cats)), labels=cats, rotation=25, ha="right")
        ax.set_yticks(range(len(rows)), labels=[f"{v.label} · {g}" for v, g in rows])
        ax.set_title(f"axis: {axis}")
        fig.colorbar(im, ax=ax, label="probability mass", shrink=0.9)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def _or_nan(x: float | None) -> float:
    return float("nan") if x is None else x


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
