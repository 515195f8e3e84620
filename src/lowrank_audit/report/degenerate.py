"""The one rule for a degenerate run, which the tables, the plots and the terminal all mark.

A run is degenerate when its KL to the full fine-tune, or its drift on neutral text, exceeds the base model's KL to the
full fine-tune: it moved farther than the whole distance between the base and the reference, so its other numbers
(a small group gap, say) describe a broken model, not a learned shift.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from .data import Run

REFERENCE_METHODS = frozenset({"base", "full"})
"""The runs the rule measures against; never marked themselves."""

DEFINITION = ("Degenerate: KL to full fine-tuning or drift on neutral text above the base model's KL to full "
              "fine-tuning (the run moved farther than the base is from the reference); its other numbers describe a "
              "broken model.")

MARK = "degenerate"


def degenerate_reason(run: "Run", base: "Run | None") -> str:
    """Why `run` is degenerate against the base run of its task and seed, or '' (not degenerate, or no base to judge)."""
    if run.method in REFERENCE_METHODS or run.status != "finished" or base is None:
        return ""
    limit = base.get("kl_to_full").value
    if limit is None:
        return ""
    over = [f"{label} {value:.3g} > base's KL to full {limit:.3g}"
            for label, value in (("KL to full", run.get("kl_to_full").value), ("drift", run.get("drift_neutral").value))
            if value is not None and value > limit]
    return "; ".join(over)


def mark_degenerate(runs: Iterable["Run"]) -> None:
    """Set `run.degenerate` on every run, judged against the finished base run of the same task and seed."""
    runs = list(runs)
    bases = {(r.task, r.seed): r for r in runs if r.method == "base" and r.status == "finished"}
    for run in runs:
        run.degenerate = degenerate_reason(run, bases.get((run.task, run.seed)))
