"""The metric library: pure functions of arrays, each with its definition in its docstring."""

from .bias import category_mass, group_gap
from .decisions import agreement, flip_rate, group_counts, pooled_rates, rate_gap, score_change, score_trajectory
from .divergence import js_divergence, kl_divergence, sequence_entropy, sequence_kl, shift_recovered, token_kl
from .fairness import GroupFairness, counterfactual_flip_rate, group_fairness, label_prob_gap
from .forgetting import sequence_accuracy, sequence_nll
from .stats import bootstrap_ci, cluster_bootstrap_ci, paired_difference
from .stereotype import (
    icat, likelihood_difference, lm_score, meaningful_share, pct_stereotype, prefers_stereotype, stereotype_score,
)
from .toxicity import expected_max_toxicity, mitigation, precision_at, recall_at, toxic_share, toxicity_rate
from .weights import effective_rank, energy_outside_rank, intruder_count, max_abs_cosines, subspace_overlap

__all__ = [
    "GroupFairness",
    "counterfactual_flip_rate",
    "group_fairness",
    "label_prob_gap",
    "agreement",
    "bootstrap_ci",
    "cluster_bootstrap_ci",
    "paired_difference",
    "category_mass",
    "effective_rank",
    "energy_outside_rank",
    "expected_max_toxicity",
    "flip_rate",
    "group_counts",
    "group_gap",
    "intruder_count",
    "icat",
    "likelihood_difference",
    "lm_score",
    "meaningful_share",
    "pct_stereotype",
    "prefers_stereotype",
    "stereotype_score",
    "js_divergence",
    "kl_divergence",
    "max_abs_cosines",
    "mitigation",
    "pooled_rates",
    "precision_at",
    "recall_at",
    "rate_gap",
    "sequence_entropy",
    "sequence_kl",
    "score_change",
    "score_trajectory",
    "sequence_accuracy",
    "sequence_nll",
    "shift_recovered",
    "subspace_overlap",
    "token_kl",
    "toxic_share",
    "toxicity_rate",
]
