"""Beside the fairness figures: intruder dimensions and forgetting per method and rank, an intruder heatmap (layer x
module) of the run with the most intruders, and, one point per run, the shift it captured against both."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from .data import Run, Variant
from .inside_plots import weight_heatmap
from .plots import Panel, Plot, Series, _save, rank_caption, rank_figure

SHIFT_CAPTURED = (  # (metric, split): the first of these a task's runs have is its "shift captured"
    ("shift_recovered", "heldout_both"),
    ("toxicity_mitigation", "heldout"),
    ("reference_agreement", None),
    ("accuracy", "test"),
)
"""What each task's fine-tuning data asked for, as one number per run (debias, toxicity, decisions, classification)."""

INTRUDERS = "weight_intruders"
SCATTER_Y = ((INTRUDERS, "intruder dimensions (sum over matrices)"),
             ("forgetting", "forgetting: general-text loss − base's, nats/token"))


def shift_metric(runs: list[Run]) -> tuple[str, str | None] | None:
    """The task's shift-captured metric: the first of SHIFT_CAPTURED that some run has."""
    return next(((m, s) for m, s in SHIFT_CAPTURED if any(r.get(m, s).value is not None for r in runs)), None)


def shift_scatter(path: Path, title: str, runs: list[Run], x: tuple[str, str | None],
                  skip: frozenset[str] = frozenset()) -> bool:
    """One panel per y of SCATTER_Y (but `skip`) that runs have; one point per run at (shift captured, y), one colour
    per method."""
    panels = [(m, label) for m, label in SCATTER_Y
              if m not in skip and any(r.get(m).value is not None for r in runs)]
    if not panels:
        return False
    methods = sorted({r.who for r in runs})
    fig = Figure(figsize=(5.5 * len(panels) + 2.0, 4.4), layout="constrained")
    for ax, (metric, label) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
        for i, method in enumerate(methods):
            points = [(r, r.get(*x).value, r.get(metric).value) for r in runs if r.who == method]
            points = [(r, px, py) for r, px, py in points if px is not None and py is not None]
            if not points:
                continue
            ax.scatter([p[1] for p in points], [p[2] for p in points], color=f"C{i % 10}", label=method, zorder=3)
            for r, px, py in points:
                if r.rank is not None:
                    ax.annotate(f"r={r.rank}", (px, py), textcoords="offset points", xytext=(4, 3), fontsize=7)
        ax.set_xlabel(f"shift captured: {x[0]}" + (f" ({x[1]})" if x[1] else ""))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize="small", frameon=False)
    fig.suptitle(title, fontweight="bold")
    _save(fig, path)
    return True


def forgetting_plots(task: str, variants: list[Variant], plots_dir: Path, slug: str) -> list[Plot]:
    """Intruders and forgetting vs rank, the intruder heatmap of the run with the most, and the per-run scatter.

    Where every run's count is 0 the intruder figures would be flat lines at 0 (seen in the default audit's report),
    so they are left out and the forgetting caption says so."""
    plots = []
    counted = [(v.mean(INTRUDERS).value, v) for v in variants if v.mean(INTRUDERS).value is not None]
    none_found = bool(counted) and all(c == 0 for c, _ in counted)
    specs = [
        ("intruders", f"{task}: intruder dimensions vs rank",
         [Panel("Intruder dimensions", "intruders of W_base + dW, summed over matrices", (Series("intruders", INTRUDERS),))],
         "Top-k left singular vectors of each adapted W_base + dW whose largest |cos| with every singular vector of "
         "W_base is below epsilon (defaults k = 10, epsilon = 0.5), summed over the adapted matrices. "),
        ("forgetting", f"{task}: forgetting on general text vs rank", [
            Panel("Forgetting", "general-text loss − base's, nats/token", (Series("forgetting", "forgetting"),)),
            Panel("Next-token accuracy on general text", "top-1 accuracy", (Series("accuracy", "general_accuracy"),)),
        ], "Held-out general sentences unrelated to the task; forgetting > 0: the model predicts them worse than "
           "the base (0 for the base by definition). "
           + ("No run has an intruder dimension (every count is 0), so no intruder figure is drawn. " if none_found else "")),
    ]
    for name, title, panels, caption in specs[1:] if none_found else specs:
        path = plots_dir / f"{slug}-{name}.png"
        if rank_figure(path, title, panels, variants):
            plots.append(Plot(path, title, caption + rank_caption(variants, [s for p in panels for s in p.series])))
    if counted and not none_found:
        most = max(counted, key=lambda c: c[0])[1]
        path = plots_dir / f"{slug}-intruders-heatmap.png"
        title = f"{task}: intruder dimensions per matrix, {most.label}"
        if weight_heatmap(path, title, [most], INTRUDERS, "intruder dimensions (of the top k)"):
            plots.append(Plot(path, title, f"The run with the most intruder dimensions ({most.label}; mean over "
                                           "seeds); blank: a matrix the method did not adapt."))
    runs = [r for v in variants for r in v.runs]
    x = shift_metric(runs)
    path = plots_dir / f"{slug}-shift-vs-intruders-forgetting.png"
    title, question, skip = (f"{task}: shift captured vs forgetting", "do they forget less?", frozenset({INTRUDERS})) \
        if none_found else (f"{task}: shift captured vs intruder dimensions and forgetting",
                            "have they the weights that moved least, and do they forget less?", frozenset())
    if x is not None and shift_scatter(path, title, runs, x, skip):
        plots.append(Plot(path, title, "One point per run, colour = method. Do the runs that kept the bias (low shift "
                                       f"captured) {question}"))
    return plots
