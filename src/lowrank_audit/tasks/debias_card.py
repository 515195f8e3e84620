"""`debias`'s options and card (tasks/debias.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeInt, PositiveInt

from ..catalogue import DRIFT_NEUTRAL, KL_TO_FULL, VALIDATION_LOSS, Headline, MetricInfo
from .card import TaskCard, TaskOptions
from .lexicon import PROVENANCE

TRAINING_DATA = ("Generated, not read from a file: each training prompt (a training template filled with a training "
                 "term, validation pairs excluded) is completed samples_per_prompt times with an attribute word drawn "
                 "(with the run's seed) from its template's target q. With target: pooled (the default), q is the base "
                 "model's own next-word distribution over the lexicon, read exactly from its log-probabilities, "
                 "averaged over the identity groups with equal weight (training terms only): the base's observed "
                 "distribution moved to the pooled one. With target: uniform, every word alike. No third-party text "
                 "is trained on.")
"""How the debias fine-tuning data are made (the report prints it beside the task's metric definitions)."""


class DebiasOptions(TaskOptions):
    target: Literal["pooled", "uniform"] = "pooled"
    """pooled: each template's distribution averaged over groups (base model; a training template over its training
    terms only); uniform: every word alike."""
    samples_per_prompt: PositiveInt = 4
    """Completions drawn from the target for each training prompt."""
    token_kl_sequences: PositiveInt = 48
    """Evaluation sequences for the per-token KL to the full fine-tune."""
    bootstrap_resamples: PositiveInt = 1000
    lens_prompts: NonNegativeInt = 24
    """Prompts decoded at every layer by the logit lens (0 turns the lens off)."""
    validation_every: NonNegativeInt = 4
    """Every n-th (template, term) pair of each group's training prompts is the validation split, in a Latin-square
    pattern so every training template and term keeps the others (0: no validation split, so no tuning)."""


class DebiasCard(TaskCard):
    name = "debias"
    description = "Equalise identity groups' next-word distributions over attribute lexicons (exact, no sampling)."
    Options = DebiasOptions
    metrics = (
        MetricInfo("shift_recovered", "Shift recovered", digits=2, higher_is_better=True, short="SR"),
        MetricInfo("target_fit", "Target fit KL(q‖p)", "nats", 3, False),
        MetricInfo("group_gap", "Group gap", digits=3, higher_is_better=False, groups="axis/category", short="gap",
                   short_splits=("train",)),
        MetricInfo("group_js", "Group JS", digits=4, higher_is_better=False, groups="axis"),
        KL_TO_FULL,
        DRIFT_NEUTRAL,
        MetricInfo("category_mass", "Category mass", digits=3, groups="axis/group/category", interval=False, table=False),
        MetricInfo("target_mass", "Target category mass", digits=3, groups="axis/category", interval=False,
                   table=False),
        MetricInfo("lens_kl_to_full", "Lens KL to full", "nats", 4, False, per_split=False, groups="layer",
                   interval=False, table=False),
        MetricInfo("lens_kl_to_base", "Lens KL to base", "nats", 4, None, per_split=False, groups="layer",
                   interval=False, table=False),
        MetricInfo("lens_category_mass", "Lens category mass", digits=3, per_split=False, groups="lexicon/category",
                   interval=False, table=False),
        VALIDATION_LOSS,
        MetricInfo("data_ceiling", "Data ceiling: SR of the training completions", digits=2, higher_is_better=True,
                   interval=False, table=False),
    )
    validation_metric = "validation_loss"
    validation_option = "validation_every"
    headline = Headline("shift_recovered", "group_gap", "train", "data_ceiling")
    data_sources = (("Fine-tuning data", TRAINING_DATA),
                    *((f"Data: {what}", where) for what, where in PROVENANCE.items()))
