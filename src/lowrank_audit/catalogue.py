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
    def heading(self) -> str:
        """The column heading: the label, with the unit when it has one."""
        return f"{self.label}, {self.unit}" if self.unit else self.label

    @classmethod
    def default(cls, name: str) -> "MetricInfo":
        """A metric nobody declared (another version's, or a new one): its name, four significant digits, not a
        column of the results table (it is listed with all other values)."""
        return cls(name, name, digits=None, table=False)


KL_TO_FULL = MetricInfo("kl_to_full", "KL to full", digits=4, higher_is_better=False, per_split=False, short="KL to full")
DRIFT_NEUTRAL = MetricInfo("drift_neutral", "Drift on neutral text", digits=4, higher_is_better=False, per_split=False,
                           short="drift")
"""Teacher-forced divergences several tasks store once per run (the metric library's `sequence_kl`)."""

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
