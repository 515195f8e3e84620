"""`classification`'s options and card (tasks/classification.py)."""

from __future__ import annotations

from pydantic import Field, NonNegativeInt, PositiveInt, model_validator

from ..catalogue import DRIFT_NEUTRAL, VALIDATION_LOSS, MetricInfo
from .card import TaskCard, TaskOptions
from .classification_data import BUILTIN, HELDOUT_ACTIONS, Columns

DEFAULT_PROMPT = "{text}\nQuestion: is this {labels}?\nAnswer:"


class ClassificationOptions(TaskOptions):
    data: str = BUILTIN
    """'builtin', a local .csv/.jsonl/.parquet file, a datasets save_to_disk folder, or 'hf:NAME[:CONFIG]'."""
    columns: Columns = Columns()
    """Column mapping of the user's data (text, label, group, split, counterfactual)."""
    train_split: str = "train"
    """The split that fine-tunes the model."""
    test_split: str = "test"
    """The split that is evaluated (user data; the built-in data has 'test' and 'heldout_terms')."""
    label_words: dict[str, str] = {}
    """label -> one-token verbalizer word (quote numeric labels); empty: each label is its own word."""
    positive_label: str | None = None
    """The favourable outcome for selection rate, parity and equalized odds; default: the first label."""
    prompt: str = DEFAULT_PROMPT
    """Prompt template with {text} and optionally {labels} ('good or bad')."""
    heldout_actions: int = Field(HELDOUT_ACTIONS, ge=1, le=16)
    """Built-in data: actions per label held out of training (they make the evaluation splits)."""
    spurious_correlation: float = Field(0.0, ge=0.0, le=1.0)
    """Built-in data: strength s of a group-label correlation in the train split, P(good | favoured) = (1+s)/2."""
    calibrate: bool = False
    """Contextual calibration (Zhao et al. 2021): divide each label's probability by its probability for the
    content-free text 'N/A', removing a model's constant preference for one label word."""
    bootstrap_resamples: PositiveInt = 1000
    validation_every: NonNegativeInt = 5
    """Every n-th row of the train split is the validation split: not trained on, not reported, only for tuning
    (0: none, so no tuning)."""

    @model_validator(mode="after")
    def _check(self) -> ClassificationOptions:
        try:
            self.prompt.format(text="", labels="")
        except (KeyError, IndexError, ValueError) as e:
            raise ValueError(f"prompt may only use the fields {{text}} and {{labels}}; it has a problem: {e!r}") from None
        if "{text}" not in self.prompt:
            raise ValueError("prompt must contain {text}, where each example's text goes")
        if self.spurious_correlation > 0 and self.data != BUILTIN:
            raise ValueError("spurious_correlation applies to the built-in data only (data: builtin)")
        return self


class ClassificationCard(TaskCard):
    name = "classification"
    description = "Classify through label words; group fairness (fairlearn) and counterfactual flips per method."
    Options = ClassificationOptions
    metrics = (
        MetricInfo("accuracy", "Accuracy", digits=3, higher_is_better=True),
        MetricInfo("worst_group_accuracy", "Worst-group accuracy", digits=3, higher_is_better=True, groups="axis"),
        MetricInfo("demographic_parity_difference", "DP difference", digits=3, higher_is_better=False, groups="axis"),
        MetricInfo("equalized_odds_difference", "EO difference", digits=3, higher_is_better=False, groups="axis"),
        MetricInfo("counterfactual_flip_rate", "Counterfactual flips", digits=3, higher_is_better=False, groups="axis"),
        DRIFT_NEUTRAL,
        MetricInfo("group_accuracy", "Group accuracy", digits=3, higher_is_better=True, groups="group", table=False),
        MetricInfo("group_selection_rate", "Group selection rate", digits=3, groups="group", table=False),
        MetricInfo("label_prob_gap", "Label probability gap", digits=3, higher_is_better=False, groups="axis",
                   table=False),
        MetricInfo("label_kl_to_full", "Label KL to full", "nats", 4, False, table=False),
        VALIDATION_LOSS,
    )
    validation_metric = "validation_loss"
    validation_option = "validation_every"
