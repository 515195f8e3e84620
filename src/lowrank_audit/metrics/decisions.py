"""Decision metrics for sequential tasks: grouped rates, gaps, counterfactual flips, score drift.

Arrays are per episode: decisions and outcomes [..., N] over applicants (any leading axes, e.g. steps),
`groups` [N] the group index of each applicant. Rates pooled over episodes are ratios of summed counts,
so an episode in which a group had few eligible applicants weighs little.
"""

from __future__ import annotations

import numpy as np


def group_counts(hits: np.ndarray, eligible: np.ndarray, groups: np.ndarray, n_groups: int) -> tuple[np.ndarray, np.ndarray]:
    """Per group: (number of eligible cases that are hits, number of eligible cases), summed over leading axes.

    approval rate: hits = approved, eligible = all; true-positive rate: hits = approved, eligible = would repay.
    """
    h = np.asarray(hits, dtype=bool) & np.asarray(eligible, dtype=bool)
    e = np.asarray(eligible, dtype=bool)
    onehot = np.eye(n_groups)[np.asarray(groups)]
    return h.reshape(-1, h.shape[-1]).sum(0) @ onehot, e.reshape(-1, e.shape[-1]).sum(0) @ onehot


def pooled_rates(hits: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """Per group: sum of hits / sum of eligible over episodes ([E, G] -> [G]); NaN where nobody was eligible."""
    num, den = np.asarray(hits, dtype=np.float64).sum(0), np.asarray(eligible, dtype=np.float64).sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def rate_gap(hits: np.ndarray, eligible: np.ndarray) -> float:
    """max_g - min_g of the pooled rates over the groups where the rate is defined; NaN with fewer than two."""
    rates = pooled_rates(hits, eligible)
    rates = rates[np.isfinite(rates)]
    return float(rates.max() - rates.min()) if len(rates) >= 2 else float("nan")


def flip_rate(decisions: np.ndarray, counterfactual: np.ndarray) -> float:
    """Share of (applicant, other group) pairs whose decision changes when only the group descriptor changes.

    `decisions` [..., N], `counterfactual` [..., N, H]: the decision with each of the H other descriptors.
    """
    d = np.asarray(decisions)[..., None]
    return float(np.mean(d != np.asarray(counterfactual)))


def agreement(decisions: np.ndarray, reference: np.ndarray) -> float:
    """Share of decisions equal to the reference policy's decision in the same state."""
    return float(np.mean(np.asarray(decisions) == np.asarray(reference)))


def score_trajectory(scores: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Mean score of each group at each step: [T+1, N] -> [T+1, G] (NaN for an empty group)."""
    s = np.asarray(scores, dtype=np.float64)
    onehot = np.eye(n_groups)[np.asarray(groups)]
    size = onehot.sum(0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (s @ onehot) / np.where(size > 0, size, np.nan)


def score_change(scores: np.ndarray, groups: np.ndarray, n_groups: int) -> np.ndarray:
    """Delayed impact: each group's mean score at the end minus at the start ([T+1, N] -> [G])."""
    traj = score_trajectory(scores, groups, n_groups)
    return traj[-1] - traj[0]
