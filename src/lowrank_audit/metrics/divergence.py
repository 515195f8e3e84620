"""Divergences between distributions (natural log, nats)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # the KLs below only call tensor methods: the report imports this module without torch
    import torch


def kl_divergence(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """KL(p || q) = sum_i p_i log(p_i / q_i) along the last axis, with 0 log 0 = 0.

    Inputs are probabilities (rows need not be normalised by the caller: they are normalised here, so a
    distribution restricted to a support, e.g. an attribute lexicon, is compared on that support).
    Returns inf where p puts mass on an outcome q gives zero probability.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    p = p / p.sum(axis=-1, keepdims=True)
    q = q / q.sum(axis=-1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(q)), 0.0)
    return terms.sum(axis=-1)


def js_divergence(dists: np.ndarray, weights: np.ndarray | None = None) -> float:
    """Generalised Jensen-Shannon divergence of k distributions (rows of `dists`).

    JS = H(sum_g w_g P_g) - sum_g w_g H(P_g), equal weights by default; for k = 2 this is the usual
    JS divergence (0 = identical, ln 2 = disjoint supports).
    """
    dists = np.asarray(dists, dtype=np.float64)
    dists = dists / dists.sum(axis=-1, keepdims=True)
    w = np.full(len(dists), 1.0 / len(dists)) if weights is None else np.asarray(weights, np.float64) / np.sum(weights)

    def entropy(p: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            return -np.where(p > 0, p * np.log(p), 0.0).sum(axis=-1)

    return float(entropy(w @ dists) - w @ entropy(dists))


def shift_recovered(kl_method: np.ndarray, kl_base: np.ndarray) -> float:
    """SR = 1 - mean KL(q||p_m) / mean KL(q||p_0): 1 = learned the target shift, 0 = no change.

    Undefined (NaN) when the base already matches the target (mean KL(q||p_0) = 0).
    """
    denom = float(np.mean(kl_base))
    if denom <= 0.0:
        return float("nan")
    return 1.0 - float(np.mean(kl_method)) / denom


def token_kl(logp_ref: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Per-position KL(p_ref || p) over the full vocabulary, from log-probabilities [..., vocab].

    Returns a tensor of shape [...] (one KL per token position), zeroed where `mask` is False.
    """
    logp_ref = logp_ref.float()
    logp = logp.float()
    kl = (logp_ref.exp() * (logp_ref - logp)).sum(-1)
    return kl if mask is None else kl * mask


def sequence_kl(logp_ref: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Per sequence, the mean per-token KL(p_ref || p) over the positions `mask` keeps: sum_t m_t KL_t / sum_t m_t.

    Inputs are [sequences, positions, vocab] log-probabilities and a [sequences, positions] mask; returns one float64
    value per sequence, so that sequences of every length weigh the same in the mean (and in its bootstrap).
    """
    return (token_kl(logp_ref, logp, mask).sum(1) / mask.sum(1)).double().numpy()


def sequence_entropy(logp: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Per sequence, the mean per-token entropy H(p) = -sum_i p_i log p_i over the positions `mask` keeps, weighted as
    `sequence_kl` weighs its KLs (inputs as there; one float64 value per sequence)."""
    logp = logp.float()
    entropy = -(logp.exp() * logp).sum(-1) * mask
    return (entropy.sum(1) / mask.sum(1)).double().numpy()

