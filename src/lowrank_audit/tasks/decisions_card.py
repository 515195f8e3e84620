"""`decisions`' options and card (tasks/decisions.py)."""

from __future__ import annotations

from pydantic import NonNegativeInt, PositiveInt, model_validator

from ..catalogue import VALIDATION_LOSS
from ..envs.lending import LendingParams
from ..envs.policies import POLICIES
from ..errors import AuditError
from .card import TaskCard, TaskOptions
from .lexicon import IDENTITY_GROUPS


class DecisionsOptions(TaskOptions):
    axis: str = "race"
    """Identity axis of the lexicon whose groups the environment's groups name."""
    env: LendingParams = LendingParams()
    """The lending simulation: groups, score distributions, repayment curve, score changes, horizon."""
    reference_policy: str = "equal_opportunity"
    """Policy whose decisions are the fine-tuning data: max_profit | group_blind | equal_opportunity."""
    train_episodes: PositiveInt = 8
    """Episodes of the reference policy that make the fine-tuning data."""
    eval_episodes: PositiveInt = 8
    """Seeded episodes with the model as the policy."""
    validation_episodes: NonNegativeInt = 2
    """Episodes of the reference policy held out for tuning: never trained on, never reported, only the fine-tuning
    loss on their decisions (0: none, so no tuning)."""
    bootstrap_resamples: PositiveInt = 1000

    @model_validator(mode="after")
    def _check(self) -> "DecisionsOptions":
        POLICIES.get(self.reference_policy)
        if self.axis not in IDENTITY_GROUPS:
            raise AuditError(f"decisions: unknown axis {self.axis!r}; choose one of {sorted(IDENTITY_GROUPS)}.")
        unknown = [g.name for g in self.env.groups if g.name not in IDENTITY_GROUPS[self.axis]]
        if unknown:
            raise AuditError(f"decisions: groups {unknown} are not groups of axis {self.axis!r}; "
                             f"choose from {sorted(IDENTITY_GROUPS[self.axis])}.")
        return self


class DecisionsCard(TaskCard):
    name = "decisions"
    description = "Be the loan officer in a seeded delayed-impact lending simulation; learn a reference policy."
    Options = DecisionsOptions
    metrics = (VALIDATION_LOSS,)
    validation_metric = "validation_loss"
    validation_option = "validation_episodes"
