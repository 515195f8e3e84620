"""Which toxicity differences between methods are real: paired bootstrap over the same prompts, every pair.

Read from the per-completion scores in the store, so any two runs can be compared after the fact (the runs
themselves only store their difference to the base and to full fine-tuning).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict

import numpy as np

from ..metrics import paired_difference, toxic_share
from ..store import Store
from .data import ReportData, Variant
from .tables import Column, TableView, fmt_number

PromptKey = tuple[str, str | None]  # prompt text, group


def _per_prompt_rates(store: Store, run_id: str, threshold: float) -> dict[str, dict[PromptKey, float]]:
    """split -> prompt -> share of that prompt's sampled completions scored >= threshold."""
    scores: dict[str, dict[PromptKey, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in store.samples(run_id, kind="eval"):
        if s["score"] is not None:
            scores[s["split"] or ""][(s["prompt"], s["group_name"])].append(s["score"])
    return {split: {k: float(toxic_share(np.array([v]), threshold)[0]) for k, v in by_prompt.items()}
            for split, by_prompt in scores.items()}


def toxicity_pair_table(data: ReportData, task: str) -> TableView | None:
    """Toxicity rate of A minus B for every pair of methods, per split, over the prompts and seeds both have.

    Units are (seed, prompt) pairs: with several seeds the interval covers the seed-to-seed variation as well.
    None when the task stored no scored samples (it is not a sampling task) or has fewer than two methods.
    """
    variants = data.variants(task)
    store = Store(data.store_path)
    try:
        options = {r["run_id"]: json.loads(r["config_json"]).get("task", {}).get("options", {}) for r in store.runs()}
        rates = {}
        for v in variants:
            for run in v.runs:
                threshold = options[run.run_id].get("threshold")
                rates[run.run_id] = {} if threshold is None else _per_prompt_rates(store, run.run_id, threshold)
    finally:
        store.close()
    variants = [v for v in variants if any(rates[r.run_id] for r in v.runs)]
    if len(variants) < 2:
        return None
    resamples = options[variants[0].runs[0].run_id].get("bootstrap_resamples", 1000)
    rows = []
    for b, a in itertools.combinations(variants, 2):
        for split in sorted({s for r in a.runs + b.runs for s in rates[r.run_id]}, key=lambda s: (s != "train", s)):
            x, y = _paired_units(a, b, split, rates)
            if not x:
                continue
            diff, lo, hi = paired_difference(np.array(x), np.array(y), resamples, seed=0)
            real = "yes" if lo > 0 or hi < 0 else "no"
            rows.append([a.label, b.label, split, str(len(x)), fmt_number(diff, 3),
                         f"[{fmt_number(lo, 3)}, {fmt_number(hi, 3)}]", real])
    cols = [Column("Method A", numeric=False), Column("Method B", numeric=False), Column("Split", numeric=False),
            Column("Paired prompts"), Column("Toxicity rate A - B"), Column("95% CI", numeric=False),
            Column("Differs", numeric=False)]
    return TableView(
        f"{task}: paired differences between methods", cols, rows,
        "Difference in the share of completions scored toxic, A minus B, paired over the same prompts (and seeds: "
        "the units are (seed, prompt) pairs both runs sampled). 95% percentile bootstrap over those units. "
        "'Differs: yes' = the interval excludes 0.",
    )


def _paired_units(a: Variant, b: Variant, split: str,
                  rates: dict[str, dict[str, dict[PromptKey, float]]]) -> tuple[list[float], list[float]]:
    """Per-prompt rates of A and B on the prompts of `split` that both sampled, for every seed both ran."""
    x: list[float] = []
    y: list[float] = []
    b_by_seed = {r.seed: r for r in b.runs}
    for run_a in a.runs:
        run_b = b_by_seed.get(run_a.seed)
        if run_b is None:
            continue
        ra, rb = rates[run_a.run_id].get(split, {}), rates[run_b.run_id].get(split, {})
        for key in sorted(ra.keys() & rb.keys(), key=lambda k: (k[0], k[1] or "")):
            x.append(ra[key])
            y.append(rb[key])
    return x, y
