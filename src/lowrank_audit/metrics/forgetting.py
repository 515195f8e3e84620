"""Forgetting: how well a model still predicts general text that has nothing to do with its fine-tuning data."""

from __future__ import annotations

import numpy as np


def sequence_nll(next_logp: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per sequence, the mean per-token negative log-likelihood -(1/T_i) sum_t log p(x_{t+1} | x_<=t), in nats.

    `next_logp[i, t]` = log p(actual token t+1 | tokens <= t) of sequence i; `mask[i, t]` marks real predictions.
    """
    lp, m = np.asarray(next_logp, np.float64), np.asarray(mask, bool)
    return -(np.where(m, lp, 0.0)).sum(1) / m.sum(1)


def sequence_accuracy(correct: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per sequence, the share of positions where the model's most probable next token is the actual next token."""
    c, m = np.asarray(correct, bool), np.asarray(mask, bool)
    return (c & m).sum(1) / m.sum(1)
