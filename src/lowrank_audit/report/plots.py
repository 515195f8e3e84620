"""Report figures as PNG files (matplotlib Figure + Agg canvas, no pyplot global state)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import NullLocator

from .data import Variant, splits_of
from .degenerate import DEFINITION as DEGENERATE_DEFINITION

_MARKERS = ("o", "s", "^", "D", "v")
_METHOD_STYLES = ("-", (0, (6, 2)), (0, (1, 1.5)))
_HLINE_STYLES = {"base": ":", "full": "--"}
_OTHER_HLINE_STYLES = ("-.", (0, (8, 2, 1, 2, 1, 2)), (0, (4, 4)))
_DEGENERATE_STYLE = dict(marker="X", markersize=11, color="#b00020", linestyle="none", zorder=5)
KL_FULL_LABEL = r"mean per-token KL($p_{\mathrm{full}}\,\|\,p_m$), nats"
DRIFT_LABEL = r"mean per-token KL($p_{\mathrm{base}}\,\|\,p_m$), nats"


def rank_caption(variants: list[Variant], series: list[Series]) -> str:
    """What the rank figure shows, saying 'error bars' only when some plotted value has a stored interval."""
    values = [v.mean(s.metric, s.split) for v in variants for s in series]
    has_interval = any(m.value is not None and (m.low is not None or m.high is not None) for m in values)
    text = "Markers: ranked methods, mean over seeds"
    text += (", error bars = 95% interval (bootstrap over prompts for one seed, Student-t across seeds otherwise)."
             if has_interval else "; no interval is stored for these values, so none is drawn.")
    text += " Dashed line: full fine-tuning; dotted line: base model"
    text += "; shaded band: their interval." if has_interval else "."
    if any(v.degenerate for v in variants):
        text += f" Red X: {DEGENERATE_DEFINITION}"
    return text + " x axis: rank on a log2 scale."


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
            Panel("KL to full fine-tuning", KL_FULL_LABEL, (Series("KL to full", "kl_to_full"),)),
            Panel("Drift on neutral text", DRIFT_LABEL, (Series("drift", "drift_neutral"),)),
        ]),
    ]
    plots = []
    for name, title, panels in specs:
        path = plots_dir / f"{slug}-{name}.png"
        if rank_figure(path, title, panels, variants):
            plots.append(Plot(path, title, rank_caption(variants, [s for p in panels for s in p.series])))
    mass_splits = splits_of(runs, "category_mass")
    if mass_splits:
        split = "heldout_templates" if "heldout_templates" in mass_splits else mass_splits[0]
        path = plots_dir / f"{slug}-category-mass.png"
        title = f"{task}: probability mass per attribute category ({split})"
        if category_mass_figure(path, title, variants, split):
            plots.append(Plot(path, title, "Mean over seeds of the next-token mass per attribute category, per identity "
                                           "group; first row: the target q (n/a in a store written before it was "
                                           "stored); then one row per method and group; one panel and colour bar per "
                                           "axis and lexicon."))
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
        _rank_panel(ax, panel, variants, titled=len(panels) > 1)  # one panel: the figure's title says it
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def _rank_panel(ax, panel: Panel, variants: list[Variant], titled: bool = True) -> None:
    ranked_methods = sorted({v.series for v in variants if v.rank is not None})
    unranked = [v for v in variants if v.rank is None]
    other_styles = iter(_OTHER_HLINE_STYLES * len(unranked))
    hline_styles = {v.method: _HLINE_STYLES.get(v.method) or next(other_styles) for v in unranked}
    flagged = False
    for i, series in enumerate(panel.series):
        color = f"C{i}"
        suffix = f" · {series.label}" if len(panel.series) > 1 else ""
        dodge = 2 ** (0.03 * (i - (len(panel.series) - 1) / 2))  # keep error bars of splits apart
        for j, method in enumerate(ranked_methods):
            shown = [v for v in variants if v.series == method and v.rank is not None]
            points = [(v, v.mean(series.metric, series.split)) for v in shown]
            points = [(v, m) for v, m in points if m.value is not None]
            if not points:
                continue
            x = [v.rank * dodge for v, _ in points]
            y = np.array([m.value for _, m in points])
            low = np.array([m.value - m.low if m.low is not None else 0.0 for _, m in points])
            high = np.array([m.high - m.value if m.high is not None else 0.0 for _, m in points])
            ax.errorbar(x, y, yerr=[low, high], color=color, marker=_MARKERS[j % len(_MARKERS)],
                        linestyle=_METHOD_STYLES[j % len(_METHOD_STYLES)], capsize=3, label=f"{method}{suffix}")
            bad = [(xi, yi) for xi, yi, (v, _) in zip(x, y, points) if v.degenerate]
            if bad:
                ax.plot(*zip(*bad), label=None if flagged else "degenerate", **_DEGENERATE_STYLE)
                flagged = True
        for v in unranked:
            _reference_line(ax, v, panel.series, i, color, hline_styles[v.method], suffix)
    ranks = sorted({v.rank for v in variants if v.rank is not None})
    ax.set_xscale("log", base=2)
    ax.set_xticks(ranks, labels=[str(r) for r in ranks])
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xlim(ranks[0] / 1.6, ranks[-1] * 1.6)
    ax.set_xlabel("rank (log2 scale)")
    ax.set_ylabel(panel.ylabel)
    if titled:
        ax.set_title(panel.title)
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)


def _reference_line(ax, v: Variant, series: tuple[Series, ...], i: int, color: str, style, suffix: str) -> None:
    """An unranked run's value as a horizontal line (with its interval as a band): one line per series, or one grey line
    drawn once when it has the same value in every series (the base's shift recovered is 0 on every split)."""
    values = [v.mean(s.metric, s.split) for s in series]
    same = all(m.value is not None for m in values) and np.allclose([m.value for m in values], values[0].value)
    if same and len(series) > 1:
        if i:
            return
        color, suffix = "0.35", ""
    m = values[i]
    if m.value is None:
        return
    ax.axhline(m.value, color=color, linestyle=style, linewidth=1.6, label=f"{v.label}{suffix}")
    if m.low is not None and m.high is not None:
        ax.axhspan(m.low, m.high, color=color, alpha=0.08, linewidth=0)


def _lexicon_of(category: str) -> str:
    """The attribute lexicon a category belongs to (its masses sum to 1 with its lexicon's other categories)."""
    from ..tasks.lexicon import LEXICONS

    return next((lex.name for lex in LEXICONS if category in lex.categories), "")


def category_mass_figure(path: Path, title: str, variants: list[Variant], split: str) -> bool:
    """Heatmap per (axis, lexicon) of mass[method · group, category] from 'axis/group/category' rows of one split, the
    target's mass ('target_mass' rows) as the first row, each panel on its own colour bar."""
    names = [
        name.split("/") for v in variants for r in v.runs for metric, name, s, _ in r.metrics
        if metric == "category_mass" and s == split and name and name.count("/") == 2
    ]
    panels = {}  # (axis, lexicon) -> (groups, categories)
    for axis, lexicon in sorted({(a, _lexicon_of(c)) for a, _, c in names}):
        cats = sorted({c for a, _, c in names if a == axis and _lexicon_of(c) == lexicon})
        panels[(axis, lexicon)] = (sorted({g for a, g, c in names if a == axis and c in cats}), cats)
    if not panels:
        return False
    axes_names = sorted({a for a, _ in panels})
    lexicons = sorted({lex for _, lex in panels})
    heights = [max(len(variants) * len(panels[(a, lex)][0]) + 1 for lex in lexicons if (a, lex) in panels)
               for a in axes_names]
    width = sum(max(len(c) for (_, lex), (_, c) in panels.items() if lex == name) * 1.1 + 4.0 for name in lexicons)
    fig = Figure(figsize=(max(7.0, width), 0.3 * sum(heights) + 1.4 * len(heights) + 0.6), layout="constrained")
    grid_axes = fig.subplots(len(axes_names), len(lexicons), squeeze=False, height_ratios=[h + 3 for h in heights])
    for row, axis in enumerate(axes_names):
        for col, lexicon in enumerate(lexicons):
            ax = grid_axes[row, col]
            if (axis, lexicon) not in panels:
                ax.set_visible(False)
                continue
            _mass_panel(fig, ax, variants, split, axis, lexicon, *panels[(axis, lexicon)])
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def _mass_panel(fig: Figure, ax, variants: list[Variant], split: str, axis: str, lexicon: str, groups: list[str],
                cats: list[str]) -> None:
    """One axis and lexicon: the target row, then method · group rows; the colour bar spans this panel's values."""
    target = [_or_nan(_first_defined(variants, "target_mass", split, f"{axis}/{c}")) for c in cats]
    rows = [(v, g) for v in variants for g in groups]
    grid = np.array([target] + [[_or_nan(v.mean("category_mass", split, f"{axis}/{g}/{c}").value) for c in cats]
                                for v, g in rows])
    finite = grid[np.isfinite(grid)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    hi = hi if hi > lo else lo + 1e-3
    im = ax.imshow(grid, cmap="viridis", vmin=lo, vmax=hi, aspect="auto")
    for (i, j), x in np.ndenumerate(grid):
        text = "n/a" if np.isnan(x) else f"{x:.2f}"
        ax.text(j, i, text, ha="center", va="center", fontsize=8,
                color="black" if np.isfinite(x) and x > lo + 0.6 * (hi - lo) else "white")
    for k in range(len(variants)):
        ax.axhline(k * len(groups) + 0.5, color="white", linewidth=3.5 if k == 0 else 2.5)
    ax.set_xticks(range(len(cats)), labels=cats, rotation=25, ha="right")
    ax.set_yticks(range(len(rows) + 1), labels=["target q"] + [f"{v.label} · {g}" for v, g in rows], fontsize=8)
    ax.get_yticklabels()[0].set_fontweight("bold")
    ax.set_title(f"axis: {axis}" + (f" · lexicon: {lexicon}" if lexicon else ""), fontsize=10)
    fig.colorbar(im, ax=ax, label="probability mass", shrink=0.9)


def _first_defined(variants: list[Variant], metric: str, split: str, group: str) -> float | None:
    """The first stored value of a metric every run shares (the target's mass), or None."""
    return next((x for v in variants for r in v.runs if (x := r.get(metric, split, group).value) is not None), None)


def _or_nan(x: float | None) -> float:
    return float("nan") if x is None else x


def _save(fig: Figure, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
