"""The verdict at the top of the report and the terminal: did each method learn the shift, compared with full fine-tuning?

Per method and rank: the share of full fine-tuning's shift it captured (SR_m / SR_full), the group gap it kept against
full's, drift, cost and the learning rate tuning chose. Differences with full are paired by seed (a Student-t interval
over the seeds both have); "differs" only when that interval excludes 0, and never from one seed. Before any share, it
says whether the reference itself learned the shift, against what the training data allow (the data ceiling).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from matplotlib.figure import Figure

from ..catalogue import Headline
from ..records import Selection
from ..tasks import TASKS
from .data import ReportData, Value, Variant, aggregate
from .plots import Plot
from .render import TopSection
from .tables import Column, TableView, fmt_number, fmt_value, method_cell

REFERENCE, BASE = "full", "base"
LEARNED = 0.8
"""Full fine-tuning learned the shift when it recovered at least this share of what the data allow (the ceiling)."""


@dataclass(frozen=True)
class MethodVerdict:
    """One method and rank against full fine-tuning, over the seeds both have."""

    variant: Variant
    share: Value
    """SR_m / SR_full per seed, averaged."""
    shift_difference: Value
    """SR_m - SR_full per seed, averaged (the interval decides 'differs')."""
    gap_ratio: Value
    gap_difference: Value
    drift: Value
    lr: str
    seeds: int

    @property
    def label(self) -> str:
        """Its name, marked when a seed of it is degenerate (report/degenerate.py)."""
        return method_cell(self.variant.label, self.variant.degenerate)

    def sentence(self) -> str:
        """One plain sentence a reader takes away."""
        share = fmt_value(self.share, 2)
        gap = "n/a" if self.gap_ratio.value is None else f"{self.gap_ratio.value:.1f}x"
        if self.seeds < 2:
            claim = "one seed, so no interval over seeds and no claim that it differs"
        else:
            shift, kept = _differs(self.shift_difference), _differs(self.gap_difference)
            claim = (f"over {self.seeds} seeds its shift {'differs from' if shift else 'is within noise of'} full's "
                     f"and its gap {'differs from' if kept else 'is within noise of'} full's")
        return f"{self.label} captures {share} of full fine-tuning's shift and keeps {gap} its group gap; {claim}."


@dataclass(frozen=True)
class Verdict:
    task: str
    headline: Headline
    reference: str
    """Whether the reference learned the shift (said before any share of it)."""
    methods: list[MethodVerdict]
    table: TableView


def _differs(v: Value) -> bool:
    return v.low is not None and v.high is not None and (v.low > 0 or v.high < 0)


def _by_seed(variant: Variant, metric: str, split: str | None) -> dict[int, float]:
    return {r.seed: r.get(metric, split).value for r in variant.runs if r.get(metric, split).value is not None}


def _paired(a: dict[int, float], b: dict[int, float], f: Callable[[float, float], float | None]) -> Value:
    """f(a_s, b_s) over the seeds both have, averaged with a Student-t interval (none from one seed)."""
    values = [f(a[s], b[s]) for s in sorted(a.keys() & b.keys())]
    return aggregate(Value(v) for v in values if v is not None)


def _ratio(x: float, y: float) -> float | None:
    return x / y if y != 0 else None


def _share(x: float, y: float) -> float | None:
    """A share of full's shift exists only where full moved toward the target (SR_full > 0)."""
    return x / y if y > 0 else None


def _lr(variant: Variant, selections: list[Selection]) -> str:
    """The variant's learning rate, and the grid tuning chose it from."""
    lrs = sorted({r.option("lr") for r in variant.runs} - {None})
    if not lrs:
        return "—"
    text = "/".join(f"{x:g}" for x in lrs)
    for s in selections:
        if s.method == variant.method and s.rank == variant.rank and s.chosen is not None and "lr" in s.chosen.point:
            grid = sorted(c.point["lr"] for c in s.candidates)
            return f"{text} (tuned, {grid[0]:g}–{grid[-1]:g})"
    return f"{text} (fixed)"


def _reference_sentence(full: Variant | None, base: Variant | None, h: Headline, selections: list[Selection]) -> str:
    if full is None:
        return "No full fine-tune finished: there is no reference to compare with, so no verdict."
    sr = full.mean(h.shift, h.split)
    ceiling = base.mean(h.ceiling, h.split) if base is not None and h.ceiling else Value(None)
    text = f"Full fine-tuning (the reference) recovered {fmt_value(sr, 2)} of the shift on {h.split} prompts"
    if ceiling.value is not None:
        text += f"; the training completions themselves allow {fmt_number(ceiling.value, 2)} (the data ceiling)"
    target = LEARNED * ceiling.value if ceiling.value is not None and ceiling.value > 0 else LEARNED
    if sr.value is not None and sr.value >= target:
        text += ". It learned the shift."
    else:
        text += (f". It did NOT learn the shift (below {LEARNED:g} of what the data allow): every share below compares "
                 "with a reference that is itself short of the target.")
    for s in selections:
        if s.method == REFERENCE and s.chosen is not None and "lr" in s.chosen.point and len(s.candidates) > 1:
            grid, lr = sorted(c.point["lr"] for c in s.candidates), s.chosen.point["lr"]
            if lr in (grid[0], grid[-1]):
                edge, other = ("smallest", "smaller") if lr == grid[0] else ("largest", "larger")
                text += (f" Its chosen learning rate ({lr:g}) is the {edge} of its grid: a {other} one may fit the "
                         "validation split better; widen the grid.")
    return text


def task_verdict(data: ReportData, task: str) -> Verdict | None:
    """The verdict of one task (None: its task declares no headline metrics)."""
    h = TASKS.card(task).headline if task in TASKS else None
    if h is None:
        return None
    variants = data.variants(task)
    full = next((v for v in variants if v.method == REFERENCE), None)
    base = next((v for v in variants if v.method == BASE), None)
    selections = [s for s in data.selections if s.task == task]
    methods = []
    if full is not None:
        sr_f, gap_f = _by_seed(full, h.shift, h.split), _by_seed(full, h.gap, h.split)
        for v in variants:
            if v.method in (BASE, REFERENCE):
                continue
            sr, gap = _by_seed(v, h.shift, h.split), _by_seed(v, h.gap, h.split)
            methods.append(MethodVerdict(
                v, _paired(sr, sr_f, _share), _paired(sr, sr_f, lambda x, y: x - y), _paired(gap, gap_f, _ratio),
                _paired(gap, gap_f, lambda x, y: x - y), v.mean("drift_neutral"), _lr(v, selections),
                len(sr.keys() & sr_f.keys())))
    methods.sort(key=lambda m: -m.share.value if m.share.value is not None else float("inf"))
    return Verdict(task, h, _reference_sentence(full, base, h, selections), methods,
                   _table(task, methods, full, h, selections))


def _table(task: str, methods: list[MethodVerdict], full: Variant | None, h: Headline,
           selections: list[Selection]) -> TableView:
    cols = [Column("method", numeric=False), Column("seeds"), Column("share of full's shift"),
            Column("group gap vs full"), Column("drift, nats"), Column("trainable params"), Column("train s"),
            Column("learning rate", numeric=False)]
    rows = []
    if full is not None:
        rows.append([f"{full.label} (reference)", str(len(full.runs)), "1", "1", fmt_value(full.mean("drift_neutral"), 4),
                     fmt_number(full.mean("trainable_params").value, 0), fmt_number(full.mean("train_seconds").value, 1),
                     _lr(full, selections)])
    for m in methods:
        rows.append([m.label, str(m.seeds), fmt_value(m.share, 2),
                     "n/a" if m.gap_ratio.value is None else fmt_value(m.gap_ratio, 2) + "x",
                     fmt_value(m.drift, 4), fmt_number(m.variant.mean("trainable_params").value, 0),
                     fmt_number(m.variant.mean("train_seconds").value, 1), m.lr])
    note = (f"Share = SR_m / SR_full and gap = gap_m / gap_full on {h.split} prompts, per seed then averaged; "
            "intervals: 95% Student-t over seeds (paired by seed; none from one seed). Sorted by share.")
    return TableView(f"{task}: verdict against full fine-tuning", cols, rows, note)


def lr_plot(data: ReportData, task: str, plots_dir: Path, slug: str) -> Plot | None:
    """Validation objective against learning rate, one line per tuned method and rank, the chosen point starred."""
    selections = [s for s in data.selections if s.task == task and s.candidates and "lr" in s.candidates[0].point]
    if not selections:
        return None
    fig = Figure(figsize=(7, 4.2), layout="constrained")
    ax = fig.add_subplot()
    for i, s in enumerate(selections):
        points = sorted((c.point["lr"], c.score) for c in s.candidates if c.score is not None)
        label = s.method + (f" r={s.rank}" if s.rank is not None else "")
        if points:
            ax.plot(*zip(*points), marker="o", color=f"C{i % 10}", label=label)
        crossed = [(c.point["lr"], c.score) for c in s.candidates if c.score is not None and c.diverged]
        if crossed:
            ax.plot(*zip(*crossed), marker="X", markersize=11, color=f"C{i % 10}", markeredgecolor="black",
                    linestyle="none")
        if s.chosen is not None:
            ax.plot([s.chosen.point["lr"]], [s.chosen.score], marker="*", markersize=16, color=f"C{i % 10}",
                    markeredgecolor="black", linestyle="none")
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(f"{selections[0].metric} (lower is better)")
    ax.legend(fontsize=8)
    path = plots_dir / f"{slug}-lr-sensitivity.png"
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    failed = sum(c.score is None for s in selections for c in s.candidates)
    crossed = [f"{s.method}{f' r={s.rank}' if s.rank is not None else ''} lr={c.point['lr']:g}: {c.diverged}"
               for s in selections for c in s.candidates if c.score is not None and c.diverged]
    caption = ("Validation objective (the fine-tuning loss on the validation prompts, which no reported split "
               "contains) against learning rate at the first seed; a star marks the point tuning chose and the other "
               "seeds ran at." + (f" {failed} grid point(s) failed or had no score and are not drawn." if failed else "")
               + (f" A cross marks a point that diverged and could not be chosen ({'; '.join(crossed)})." if crossed
                  else ""))
    return Plot(path, f"{task}: learning-rate sensitivity", caption)


def verdict_sections(data: ReportData, plots_dir: Path) -> list[TopSection]:
    """The verdict at the top of the report, one section per task that has one (build.TOP_SECTIONS)."""
    out = []
    for i, task in enumerate(data.tasks()):
        v = task_verdict(data, task)
        if v is None:
            continue
        plot = lr_plot(data, task, plots_dir, f"verdict-{i}")
        out.append(TopSection(f"Verdict: {task}", f"verdict-{i}", [v.table], [plot] if plot else [],
                              [v.reference] + [m.sentence() for m in v.methods]))
    return out


def verdict_lines(data: ReportData) -> list[str]:
    """The verdict as plain lines for the terminal: per task, the reference sentence, then one sentence per method."""
    out: list[str] = []
    for task in data.tasks():
        v = task_verdict(data, task)
        if v is None:
            continue
        out += [f"{task}: {v.reference}"] + [f"  {m.sentence()}" for m in v.methods]
    return out

