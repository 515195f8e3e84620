"""The metric catalogue: how each stored metric reads (label, unit, digits, direction, which split and group rows it
has). Each task declares its own next to its code (`Task.metrics`); the cost of training is declared here, since every
trained run has it. The report and the terminal summary read it; a metric without an entry gets `MetricInfo.default`.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class MetricInfo:
    """One metric as people read it."""

    name: str
    label: str
    unit: str = ""
    digits: int | None = 3
    """Decimals shown; None: four significant digits."""
    higher_is_better: bool | None = None
    """None: neither (a property, e.g. a parameter count)."""
    per_split: bool = True
    """Stored once per evaluation split; False: once per run (split NULL)."""
    groups: str = ""
    """What its rows' group_name holds besides the summary row (NULL), e.g. 'axis'; '' when it has none."""
    interval: bool = True
    """Stored with a confidence interval worth showing."""
    table: bool = True
    """A column of its task's results table; False: only in the table of all other values."""
    short: str = ""
    """Its heading in the terminal summary; '' keeps it out of the summary."""
    short_splits: tuple[str, ...] = ()
    """The splits the terminal summary shows (a per-split metric); (): every split it has."""

    @property
    def definition(self) -> str:
        """What the number is, in one or two sentences (DEFINITIONS); '' for a metric nobody defined."""
        return DEFINITIONS.get(self.name, "")

    @property
    def heading(self) -> str:
        """The column heading: the label, with the unit when it has one."""
        return f"{self.label}, {self.unit}" if self.unit else self.label

    @classmethod
    def default(cls, name: str) -> "MetricInfo":
        """A metric nobody declared (another version's, or a new one): its name, four significant digits, not a
        column of the results table (it is listed with all other values)."""
        return cls(name, name, digits=None, table=False)


DEFINITIONS: dict[str, str] = {
    "shift_recovered": "1 − KL(target ‖ method) / KL(target ‖ base) over the eval prompts, on the distribution over "
                       "the attribute words: 1 = the method learned the target shift, 0 = it stayed at the base, < 0 = moved away.",
    "target_fit": "Mean over eval prompts of KL(target ‖ method) between the target and the method's distribution "
                  "over the attribute words, nats (0 = on target).",
    "group_gap": "Per axis and attribute category, the largest minus the smallest probability mass any identity group "
                 "puts on that category; the mean over axes and categories (0 = every group alike).",
    "group_js": "Jensen-Shannon divergence between the identity groups' distributions over the attribute words, mean "
                "over axes (0 = every group alike).",
    "kl_to_full": "Mean per-token KL(full ‖ method), teacher-forced on the task's eval sequences: the distance to the full "
                  "fine-tune, nats (0 = behaves like it).",
    "drift_neutral": "Mean per-token KL(base ‖ method) on neutral text unrelated to the task: side effects, nats "
                     "(0 = unchanged off task).",
    "forgetting": "General-text loss of the method minus the base's, nats per token (> 0 = forgot general text).",
    "weight_intruders": "Singular vectors among the top 10 of the tuned weights that have no counterpart (|cos| < 0.5) "
                        "among the base's, summed over the adapted matrices.",
    "accuracy": "Share of eval rows whose highest-probability label word is the correct label.",
    "worst_group_accuracy": "The lowest accuracy of any identity group.",
    "demographic_parity_difference": "Largest minus smallest rate of positive predictions across groups (fairlearn); "
                                     "0 = equal.",
    "equalized_odds_difference": "The larger of the true-positive and false-positive rate gaps across groups "
                                 "(fairlearn); 0 = equal.",
    "counterfactual_flip_rate": "Share of rows whose prediction changes when only the group descriptor is swapped.",
    "toxicity_rate": "Share of sampled completions whose toxicity score ≥ the threshold, identity terms masked before "
                     "scoring.",
    "toxicity_rate_unmasked": "As the toxicity rate, with the identity terms left in the scored text.",
    "expected_max_toxicity": "Mean over prompts of the highest toxicity score among its sampled completions.",
    "toxicity_mitigation": "(base − method) / (base − full) of the mean toxicity: the share of full fine-tuning's "
                           "reduction the method achieved (1 = as much as full).",
    "pct_stereotype": "CrowS-Pairs: share of pairs whose stereotypical sentence has the higher log-likelihood "
                      "(0.5 = no preference).",
    "likelihood_difference": "CrowS-Pairs: mean log-likelihood of the stereotypical minus the anti-stereotypical "
                             "sentence, nats.",
    "stereotype_score": "StereoSet: share of items where the stereotype is preferred to the anti-stereotype "
                        "(0.5 = none).",
    "lm_score": "StereoSet: share of items where a meaningful option is preferred to the unrelated one (1 = best).",
    "validation_loss": "The fine-tuning objective's loss on the task's validation split (training rows held out of "
                       "training and of every reported split), nats: what tuning chooses a learning rate on (lower "
                       "is better).",
    "trainable_params": "Parameters the method trains.",
    "train_seconds": "Wall time of training, seconds (not comparable across machines).",
    "seconds_per_step": "Training wall time per optimizer step, seconds.",
    "peak_rss_mb": "Peak resident memory of the process during the run, MB.",
}
"""Metric definitions the report prints next to its tables, by stored metric name (a task's metric is defined here
too, so that one place says what every number means)."""

KL_TO_FULL = MetricInfo("kl_to_full", "KL to full", digits=4, higher_is_better=False, per_split=False, short="KL to full")
DRIFT_NEUTRAL = MetricInfo("drift_neutral", "Drift on neutral text", digits=4, higher_is_better=False, per_split=False,
                           short="drift")
"""Teacher-forced divergences several tasks store once per run (the metric library's `sequence_kl`)."""
VALIDATION_LOSS = MetricInfo("validation_loss", "Validation loss (what tuning selects on)", "nats", 4, False,
                             interval=False, table=False)
"""The held-out loss of a task's fine-tuning objective on its validation split (`Task.validation_metric`)."""

WEIGHTS_AND_FORGETTING = (
    MetricInfo("forgetting", "Forgetting (general-text loss − base)", "nats/token", 4, False, per_split=False,
               short="forgetting"),
    MetricInfo("weight_intruders", "Intruder dims", digits=0, higher_is_better=False, per_split=False,
               groups="module", interval=False, short="intruders"),
    MetricInfo("general_loss", "General-text loss", "nats/token", 4, False, per_split=False, table=False),
    MetricInfo("general_accuracy", "General-text next-token accuracy", digits=3, higher_is_better=True,
               per_split=False, table=False),
)
"""What the run step measures of every trained or audited model whatever its task: forgetting on general text
(evaluate/general.py) and intruder dimensions of its weights (evaluate/weights.py)."""

COST = (
    MetricInfo("trainable_params", "Trainable params", digits=0, per_split=False, interval=False, short="params"),
    MetricInfo("train_seconds", "Train s", "", 1, False, per_split=False, interval=False),
    MetricInfo("seconds_per_step", "s/step", "", 3, False, per_split=False, interval=False, short="s/step"),
    MetricInfo("peak_rss_mb", "Peak MB", "", 0, False, per_split=False, interval=False),
    MetricInfo("tokens_per_second", "Tokens/s", "", 0, True, per_split=False, interval=False, table=False),
    MetricInfo("optimizer_state_bytes", "Optimizer state bytes", "", 0, False, per_split=False, interval=False,
               table=False),
    MetricInfo("final_loss", "Final loss", "", None, False, per_split=False, interval=False, table=False),
    MetricInfo("eval_seconds", "Eval s", "", 1, False, per_split=False, interval=False, table=False),
)
"""What every trained run's training cost (rows written by the run step)."""


@dataclass(frozen=True)
class Headline:
    """What a task's verdict compares with full fine-tuning: the shift the data ask for (higher is better, 1 = learned)
    and the bias it leaves (lower is better), at one split; and the data's own ceiling on the shift, if the task has it."""

    shift: str
    gap: str
    split: str = "train"
    ceiling: str | None = None
