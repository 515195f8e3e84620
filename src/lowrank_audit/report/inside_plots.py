"""Where the shift is lost: logit-lens curves per layer and weight-update heatmaps (layer x module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .data import Variant, aggregate
from .plots import Plot, _or_nan, _save

LENS_METRICS = (  # metric, panel title, axis label (mathtext)
    ("lens_kl_to_full", "KL to full fine-tuning per layer", r"KL($p_{\mathrm{full}}^{\ell}\,\|\,p_m^{\ell}$)"),
    ("lens_kl_to_base", "KL to the base per layer", r"KL($p_{\mathrm{base}}^{\ell}\,\|\,p_m^{\ell}$)"),
)
WEIGHT_METRICS = (  # metric, title, colour-bar label, per-panel scale floor (None: one scale for all panels)
    ("weight_subspace_overlap", "subspace overlap with full fine-tuning",
     r"overlap of top-$r$ subspaces of $dW_m$, $dW_{\mathrm{full}}$", None),
    ("weight_energy_outside", "full fine-tuning's update outside rank r",
     r"share of $\|dW_{\mathrm{full}}\|^2$ outside best rank $r$", None),
    ("weight_effective_rank", "effective rank of the update", r"effective rank of $dW_m$", 1.0),
)
LENS_CAPTION = ("Each layer's residual stream decoded through the final norm and unembedding (logit lens); mean over the "
                "task's lens prompts and over seeds, symmetric-log y axis. Left: how far each method is from full "
                "fine-tuning at each layer; right: how far it moved from the base.")


def _layer_value(v: Variant, metric: str, layer: int, group: str | None = None) -> float | None:
    return aggregate(r.get(metric, None, group, layer) for r in v.runs).value


def _layers(variants: list[Variant], metric: str) -> list[int]:
    return sorted({k[3] for v in variants for r in v.runs for k in r.metrics if k[0] == metric and k[3] is not None})


def lens_figure(path: Path, title: str, variants: list[Variant]) -> bool:
    """One panel per lens metric, one line per method (mean over seeds), x = layer."""
    panels = [(m, name, label) for m, name, label in LENS_METRICS if _layers(variants, m)]
    if not panels:
        return False
    fig = Figure(figsize=(6.0 * len(panels) + 2.0, 4.4), layout="constrained")
    for ax, (metric, name, label) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        layers = _layers(variants, metric)
        for i, v in enumerate(variants):
            y = [_or_nan(_layer_value(v, metric, layer)) for layer in layers]
            if not np.isfinite(y).any():
                continue
            ax.plot(layers, y, marker="o", markersize=3, color=f"C{i % 10}", label=v.label,
                    linestyle="--" if v.method == "full" else "-")
        ax.set_yscale("symlog", linthresh=1e-3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_xlabel("layer (block output; last = model output)")
        ax.set_ylabel(f"mean {label}, nats")
        ax.set_title(name)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def weight_heatmap(path: Path, title: str, variants: list[Variant], metric: str, label: str,
                   floor: float | None = None) -> bool:
    """One heatmap per method variant: rows = module type, columns = layer; one shared colour scale, or with a `floor`
    one per variant from the floor (or lower) up (a rank-1 LoRA's effective rank is invisible on full fine-tuning's
    0-300 scale; the floor keeps a constant panel from stretching noise over the whole scale)."""
    per_panel = floor is not None
    shown = [v for v in variants if _layers([v], metric)]
    if not shown:
        return False
    modules = sorted({k[1] for v in shown for r in v.runs for k in r.metrics if k[0] == metric and k[3] is not None})
    layers = _layers(shown, metric)
    grids = [np.array([[_or_nan(_layer_value(v, metric, layer, m)) for layer in layers] for m in modules]) for v in shown]
    finite = np.concatenate([g[np.isfinite(g)] for g in grids]) if grids else np.array([])
    vmin, vmax = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    fig = Figure(figsize=(max(6.0, 0.28 * len(layers) + 3.0), 1.6 + (0.3 * len(modules) + 0.6) * len(shown)),
                 layout="constrained")
    axes = fig.subplots(len(shown), 1, squeeze=False)[:, 0]
    for ax, v, grid in zip(axes, shown, grids):
        lo, hi = vmin, vmax
        if floor is not None and np.isfinite(grid).any():
            lo, hi = min(float(np.nanmin(grid)), floor), max(float(np.nanmax(grid)), floor + 1.0)
        im = ax.imshow(grid, cmap="viridis", vmin=lo, vmax=hi if hi > lo else lo + 1, aspect="auto")
        ax.set_yticks(range(len(modules)), labels=modules)
        ax.set_xticks(range(len(layers)), labels=[str(layer) for layer in layers], fontsize=7)
        ax.set_title(v.label, fontsize=10)
        if per_panel:
            fig.colorbar(im, ax=ax, label=label if ax is axes[0] else None, pad=0.01)
    axes[-1].set_xlabel("layer")
    if not per_panel:
        fig.colorbar(im, ax=list(axes), label=label, shrink=0.8)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def inside_plots(task: str, variants: list[Variant], plots_dir: Path, slug: str) -> list[Plot]:
    """The lens curves and the weight-update heatmaps, where the runs have those metrics."""
    plots = []
    path = plots_dir / f"{slug}-logit-lens.png"
    if lens_figure(path, f"{task}: logit lens per layer", variants):
        plots.append(Plot(path, f"{task}: logit lens per layer", LENS_CAPTION))
    for metric, name, label, floor in WEIGHT_METRICS:
        path = plots_dir / f"{slug}-{metric.replace('_', '-')}.png"
        title = f"{task}: {name}"
        if weight_heatmap(path, title, variants, metric, label, floor):
            scale = (f" Each panel has its own colour scale, from {floor:g} (or its lowest value) up."
                     if floor is not None else " One colour scale for all panels.")
            plots.append(Plot(path, title, "Per adapted matrix dW = W_m − W_base (adapters merged), mean over seeds."
                              + scale))
    return plots
