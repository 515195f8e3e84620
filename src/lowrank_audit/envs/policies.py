"""Reference lending policies, keyed by name: each maps an observation to one action per applicant.

- `max_profit`: approve when the expected profit p_g(s) * interest - (1 - p_g(s)) is positive; a
  per-group score threshold (the curve does not decrease), the same for every group when no group has a
  repay_shift.
- `group_blind`: one score threshold for everyone, the one maximising the expected profit of the
  current applicants (ties: the higher threshold).
- `equal_opportunity`: per-group thresholds giving every group at least the expected true-positive rate
  that `max_profit` achieves over all applicants; each group gets the highest such threshold.
Expected true-positive rate of a group at threshold t: sum of p over its applicants with score >= t,
divided by the sum of p over all its applicants.
"""

from __future__ import annotations

from typing import Callable

import numpy as np

from ..registry import Registry
from .lending import LendingParams, repay_probability

Policy = Callable[[dict[str, np.ndarray], LendingParams], np.ndarray]


def _profit(p: np.ndarray, params: LendingParams) -> np.ndarray:
    """Expected profit of approving a loan of 1 repaid with probability p."""
    return p * params.interest - (1.0 - p)


def max_profit(obs: dict[str, np.ndarray], params: LendingParams) -> np.ndarray:
    """Approve every applicant whose expected profit is positive."""
    p = repay_probability(params, obs["score"], obs["group"])
    return (_profit(p, params) > 0).astype(np.int8)


def group_blind(obs: dict[str, np.ndarray], params: LendingParams) -> np.ndarray:
    """One threshold for all groups, chosen to maximise the expected profit of the current applicants."""
    scores = obs["score"]
    gain = _profit(repay_probability(params, scores, obs["group"]), params)
    candidates = np.append(np.unique(scores), np.inf)
    totals = [gain[scores >= t].sum() for t in candidates]
    best = candidates[max(range(len(candidates)), key=lambda i: (totals[i], candidates[i]))]
    return (scores >= best).astype(np.int8)


def equal_opportunity(obs: dict[str, np.ndarray], params: LendingParams) -> np.ndarray:
    """Per-group thresholds: each group's expected TPR reaches max_profit's overall expected TPR."""
    scores, groups = obs["score"], obs["group"]
    p = repay_probability(params, scores, groups)
    target = p[max_profit(obs, params).astype(bool)].sum() / p.sum() if p.sum() > 0 else 0.0
    action = np.zeros(len(scores), dtype=np.int8)
    for g in np.unique(groups):
        member = groups == g
        total = p[member].sum()
        if target <= 0 or total <= 0:
            continue
        for t in np.unique(scores[member])[::-1]:
            chosen = member & (scores >= t)
            if p[chosen].sum() / total >= target - 1e-12:
                action[chosen] = 1
                break
    return action


POLICIES: Registry[Policy] = Registry("reference policy")
POLICIES.register("max_profit", max_profit)
POLICIES.register("group_blind", group_blind)
POLICIES.register("equal_opportunity", equal_opportunity)
