"""Where the shift is lost: logit-lens curves per layer and weight-update heatmaps (layer x module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from .data import Variant, aggregate
from .plots import Plot, _or_nan, _save

LENS_METRICS = (("lens_kl_to_full", "KL(p_full^l ‖ p_m^l)"), ("lens_kl_to_base", "KL(p_base^l ‖ p_m^l)"))
WEIGHT_METRICS = (  # metric, title, colour-bar label
    ("weight_subspace_overlap", "subspace overlap with full fine-tuning", "overlap of top-r subspaces of dW_m, dW_full"),
    ("weight_energy_outside", "full fine-tuning's update outside rank r", "share of ||dW_full||² outside best rank r"),
    ("weight_effective_rank", "effective rank of the update", "effective rank of dW_m"),
)


def _layer_value(v: Variant, metric: str, layer: int, group: str | None = None) -> float | None:
    return aggregate(r.get(metric, None, group, layer) for r in v.runs).value


def _layers(variants: list[Variant], metric: str) -> list[int]:
    return sorted({k[3] for v in variants for r in v.runs for k in r.metrics if k[0] == metric and k[3] is not None})


def lens_figure(path: Path, title: str, variants: list[Variant]) -> bool:
    """One panel per lens metric, one line per method (mean over seeds), x = layer."""
    panels = [(m, label) for m, label in LENS_METRICS if _layers(variants, m)]
    if not panels:
        return False
    fig = Figure(figsize=(6.0 * len(panels) + 2.0, 4.4), layout="constrained")
    for ax, (metric, label) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
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
        ax.set_title(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def weight_heatmap(path: Path, title: str, variants: list[Variant], metric: str, label: str) -> bool:
    """One heatmap per method variant: rows = module type, columns = layer."""
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
        im = ax.imshow(grid, cmap="viridis", vmin=vmin, vmax=vmax if vmax > vmin else vmin + 1, aspect="auto")
        ax.set_yticks(range(len(modules)), labels=modules)
        ax.set_xticks(range(len(layers)), labels=[str(layer) for layer in layers], fontsize=7)
        ax.set_title(v.label, fontsize=10)
    axes[-1].set_xlabel("layer")
    fig.colorbar(im, ax=list(axes), label=label, shrink=0.8)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def inside_plots(task: str, variants: list[Variant], plots_dir: Path, slug: str) -> list[Plot]:
    """The lens curves and the weight-update heatmaps, where the runs have those metrics."""
    plots = []
    path = plots_dir / f"{slug}-logit-lens.png"
    if lens_figure(path, f"{task}: logit lens per layer", variants):
        plots.append(Plot(path, f"{task}: logit lens per layer",
                          "Each layer's residual stream decoded through the final norm and unembedding; mean over "
                          "the task's lens prompts and over seeds. Low-rank methods that stay near the base show a "
                          "large KL to full fine-tuning from the layer where full fine-tuning starts to move."))
    for metric, name, label in WEIGHT_METRICS:
        path = plots_dir / f"{slug}-{metric.replace('_', '-')}.png"
        title = f"{task}: {name}"
        if weight_heatmap(path, title, variants, metric, label):
            plots.append(Plot(path, title, "Per adapted matrix dW = W_m - W_base (adapters merged), mean over seeds."))
    return plots
