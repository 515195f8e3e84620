"""Group bias over an attribute lexicon."""

from __future__ import annotations

import numpy as np


def category_mass(p_words: np.ndarray, word_category: np.ndarray, n_categories: int) -> np.ndarray:
    """Probability mass on each attribute category: sum of p over the category's words.

    `p_words` is [..., n_words] (normalised over the lexicon here), `word_category` maps word -> category
    index; the result is [..., n_categories] and sums to 1 along the last axis.
    """
    p = np.asarray(p_words, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    onehot = np.eye(n_categories)[np.asarray(word_category)]
    return p @ onehot


def group_gap(mass_by_group: np.ndarray) -> np.ndarray:
    """Per-category gap between groups: max_g mass_g(c) - min_g mass_g(c), for [n_groups, n_categories]."""
    m = np.asarray(mass_by_group, dtype=np.float64)
    return m.max(axis=0) - m.min(axis=0)
