"""Classification fairness metrics against fairlearn's own functions and against hand-worked examples."""

import math
from functools import partial

import numpy as np
import pytest
from fairlearn.metrics import (
    MetricFrame, demographic_parity_difference, equalized_odds_difference, false_positive_rate, selection_rate,
    true_positive_rate,
)
from sklearn.metrics import accuracy_score

from lowrank_audit.metrics import counterfactual_flip_rate, group_fairness, label_prob_gap

# group a: TPR 1/2, FPR 0;  group b: TPR 1, FPR 1/2;  group c: TPR 0, FPR 1/3
HAND = {
    "groups": list("aaaa") + list("bbbbb") + list("cccc"),
    "y_true": ["yes", "yes", "no", "no"] + ["yes", "yes", "yes", "no", "no"] + ["yes", "no", "no", "no"],
    "y_pred": ["yes", "no", "no", "no"] + ["yes", "yes", "yes", "yes", "no"] + ["no", "yes", "no", "no"],
}


def test_hand_worked_table():
    f = group_fairness(np.array(HAND["y_true"]), np.array(HAND["y_pred"]), np.array(HAND["groups"]), positive="yes")
    assert f.accuracy == pytest.approx(9 / 13)
    assert f.group_accuracy == pytest.approx({"a": 3 / 4, "b": 4 / 5, "c": 2 / 4})
    assert f.worst_group_accuracy == pytest.approx(0.5)
    assert f.group_selection_rate == pytest.approx({"a": 1 / 4, "b": 4 / 5, "c": 1 / 4})
    assert f.demographic_parity_difference == pytest.approx(4 / 5 - 1 / 4)
    assert f.equalized_odds_difference == pytest.approx(max(1 - 0, 1 / 2 - 0))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equal_to_fairlearn_on_a_random_multiclass_table(seed):
    rng = np.random.default_rng(seed)
    n, labels = 300, np.array(["pos", "neg", "mixed"])
    groups = rng.choice(["g1", "g2", "g3", "g4"], size=n)
    y_true = rng.choice(labels, size=n)
    y_pred = np.where(rng.random(n) < 0.6, y_true, rng.choice(labels, size=n))
    f = group_fairness(y_true, y_pred, groups, positive="pos")

    frame = MetricFrame(metrics={"acc": accuracy_score, "sel": partial(selection_rate, pos_label="pos")},
                        y_true=y_true, y_pred=y_pred, sensitive_features=groups)
    t, p = (y_true == "pos").astype(int), (y_pred == "pos").astype(int)
    assert f.accuracy == pytest.approx(accuracy_score(y_true, y_pred))
    assert f.group_accuracy == pytest.approx(frame.by_group["acc"].to_dict())
    assert f.group_selection_rate == pytest.approx(frame.by_group["sel"].to_dict())
    assert f.worst_group_accuracy == pytest.approx(frame.group_min()["acc"])
    assert f.demographic_parity_difference == pytest.approx(demographic_parity_difference(t, p, sensitive_features=groups))
    assert f.equalized_odds_difference == pytest.approx(equalized_odds_difference(t, p, sensitive_features=groups))
    # and fairlearn's equalized odds is what its docstring says: the larger of the TPR and FPR ranges
    rates = MetricFrame(metrics={"tpr": true_positive_rate, "fpr": false_positive_rate}, y_true=t, y_pred=p,
                        sensitive_features=groups).by_group
    assert f.equalized_odds_difference == pytest.approx(max(np.ptp(rates["tpr"]), np.ptp(rates["fpr"])))


def test_equalized_odds_is_undefined_when_a_group_lacks_a_class():
    y_true = np.array(["yes", "yes", "no", "no", "no", "no"])
    y_pred = np.array(["yes", "no", "no", "yes", "yes", "no"])
    groups = np.array(list("aabbbb"))  # group b has no true 'yes': its true-positive rate does not exist
    f = group_fairness(y_true, y_pred, groups, positive="yes")
    assert math.isnan(f.equalized_odds_difference)
    assert f.demographic_parity_difference == pytest.approx(0.5 - 0.5)


def test_group_fairness_rejects_empty_or_ragged_input():
    with pytest.raises(ValueError, match="equal length"):
        group_fairness(np.array([]), np.array([]), np.array([]), positive="yes")
    with pytest.raises(ValueError, match="equal length"):
        group_fairness(np.array(["yes"]), np.array(["yes", "no"]), np.array(["a"]), positive="yes")


def test_counterfactual_flip_rate_by_hand():
    pred = np.array(["A", "A", "B", "A", "A", "B"])
    cluster = np.array(["c1", "c1", "c1", "c2", "c2", "c3"])  # c3 has no counterfactual: left out
    # c1: rows 0 and 1 differ from 1 of their 2 counterparts, row 2 from both; c2 agrees
    assert counterfactual_flip_rate(pred, cluster) == pytest.approx((0.5 + 0.5 + 1 + 0 + 0) / 5)
    assert counterfactual_flip_rate(np.array(["A", "A"]), np.array(["x", "x"])) == 0.0
    assert math.isnan(counterfactual_flip_rate(np.array(["A", "B"]), np.array(["x", "y"])))


def test_counterfactual_flip_rate_matches_a_pairwise_loop():
    rng = np.random.default_rng(3)
    pred, cluster = rng.choice(["x", "y", "z"], size=60), rng.choice([f"c{i}" for i in range(12)], size=60)
    per_row = []
    for i in range(60):
        others = [j for j in range(60) if j != i and cluster[j] == cluster[i]]
        if others:
            per_row.append(np.mean([pred[j] != pred[i] for j in others]))
    assert counterfactual_flip_rate(pred, cluster) == pytest.approx(np.mean(per_row))


def test_label_prob_gap_by_hand():
    assert label_prob_gap(np.array([0.2, 0.4, 0.9, 0.5, 0.1]), np.array(list("aabbc"))) == pytest.approx(0.7 - 0.1)
