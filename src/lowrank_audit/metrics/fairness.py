"""Classification fairness: group metrics over one prediction table, computed with fairlearn's MetricFrame.

Binary-outcome metrics (selection rate, demographic parity, equalized odds) treat one label as the
positive outcome and every other label as negative (one-vs-rest), so they apply to any label set.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import numpy as np
from fairlearn.metrics import MetricFrame, demographic_parity_difference, equalized_odds_difference, selection_rate
from sklearn.metrics import accuracy_score


@dataclass(frozen=True)
class GroupFairness:
    """Accuracy and group-fairness numbers of one prediction table (definitions in `group_fairness`)."""

    accuracy: float
    group_accuracy: dict[str, float]
    group_selection_rate: dict[str, float]
    worst_group_accuracy: float
    demographic_parity_difference: float
    equalized_odds_difference: float


def group_fairness(y_true: np.ndarray, y_pred: np.ndarray, groups: np.ndarray, positive: str) -> GroupFairness:
    """Accuracy overall and per group, worst-group accuracy, demographic-parity and equalized-odds differences.

    - accuracy: share of rows with y_pred == y_true; group_accuracy: the same within each group;
      worst_group_accuracy: the minimum of group_accuracy.
    - group_selection_rate: share of a group's rows predicted `positive`.
    - demographic_parity_difference: max_g - min_g of the selection rate (fairlearn, between_groups).
    - equalized_odds_difference: the larger of the between-group ranges of the true-positive rate and of
      the false-positive rate (fairlearn, worst_case). NaN when some group lacks true positives or true
      negatives: its rate is undefined (fairlearn would count it as 0).
    """
    y_true, y_pred, groups = (np.asarray(a).astype(str) for a in (y_true, y_pred, groups))
    if not len(y_true) == len(y_pred) == len(groups) or len(y_true) == 0:
        raise ValueError("group_fairness: y_true, y_pred and groups must be non-empty and of equal length")
    frame = MetricFrame(
        metrics={"accuracy": accuracy_score, "selection_rate": partial(selection_rate, pos_label=positive)},
        y_true=y_true, y_pred=y_pred, sensitive_features=groups,
    )
    by_group = frame.by_group
    t_pos, p_pos = (y_true == positive).astype(int), (y_pred == positive).astype(int)
    defined = all(len(set(t_pos[groups == g])) == 2 for g in np.unique(groups))
    eod = equalized_odds_difference(t_pos, p_pos, sensitive_features=groups) if defined else float("nan")
    return GroupFairness(
        accuracy=float(frame.overall["accuracy"]),
        group_accuracy={str(g): float(v) for g, v in by_group["accuracy"].items()},
        group_selection_rate={str(g): float(v) for g, v in by_group["selection_rate"].items()},
        worst_group_accuracy=float(frame.group_min()["accuracy"]),
        demographic_parity_difference=float(demographic_parity_difference(t_pos, p_pos, sensitive_features=groups)),
        equalized_odds_difference=float(eod),
    )


def counterfactual_flip_rate(y_pred: np.ndarray, cluster: np.ndarray) -> float:
    """Share of predictions that change when only the group term is swapped for another group's.

    Rows with the same `cluster` id are one text rendered with different groups' terms. For each row,
    the share of the other rows of its cluster whose prediction differs (a uniformly chosen swap); the
    result is the mean over rows in clusters of two or more (NaN if there are none).
    """
    y_pred, cluster = np.asarray(y_pred).astype(str), np.asarray(cluster).astype(str)
    _, c_idx, c_size = np.unique(cluster, return_inverse=True, return_counts=True)
    _, pair_idx, pair_count = np.unique(np.stack([cluster, y_pred]), axis=1, return_inverse=True, return_counts=True)
    size, same = c_size[c_idx], pair_count[pair_idx.ravel()]
    keep = size > 1
    if not keep.any():
        return float("nan")
    return float(np.mean((size[keep] - same[keep]) / (size[keep] - 1)))


def label_prob_gap(p_positive: np.ndarray, groups: np.ndarray) -> float:
    """max_g - min_g of the mean probability a group's rows give the positive label (a soft parity gap).

    Unlike the demographic-parity difference it sees shifts that do not cross the decision boundary.
    """
    p, groups = np.asarray(p_positive, dtype=np.float64), np.asarray(groups).astype(str)
    means = [p[groups == g].mean() for g in np.unique(groups)]
    return float(max(means) - min(means))
