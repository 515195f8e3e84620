"""Weight-update geometry: how low-rank is an update, and does it point where full fine-tuning's does?"""

from __future__ import annotations

import numpy as np


def effective_rank(singular_values: np.ndarray) -> float:
    """exp of the Shannon entropy of the normalised singular values (Roy & Vetterli 2007).

    Equals k for k equal non-zero singular values, 1 for a rank-1 matrix, 0 for the zero matrix.
    """
    s = np.asarray(singular_values, dtype=np.float64)
    total = s.sum()
    if total <= 0:
        return 0.0
    p = s[s > 0] / total
    return float(np.exp(-(p * np.log(p)).sum()))


def energy_outside_rank(singular_values: np.ndarray, rank: int) -> float:
    """Share of ||dW||_F^2 outside the best rank-r approximation: 1 - sum_{i<=r} s_i^2 / sum_i s_i^2.

    By Eckart-Young this is the least relative error any rank-r update can have when it tries to be dW:
    for dW = full fine-tuning's update, it is what rank r could capture at best.
    """
    s2 = np.asarray(singular_values, dtype=np.float64) ** 2
    total = s2.sum()
    return float(1.0 - s2[:rank].sum() / total) if total > 0 else float("nan")


def subspace_overlap(u_a: np.ndarray, u_b: np.ndarray) -> float:
    """Overlap of the column spaces of two orthonormal bases: ||U_a^T U_b||_F^2 / min(k_a, k_b).

    1 = one subspace contains the other, 0 = orthogonal; two random k-dim subspaces of R^n give ~ k/n.
    """
    a, b = np.asarray(u_a, np.float64), np.asarray(u_b, np.float64)
    k = min(a.shape[1], b.shape[1])
    return float(np.linalg.norm(a.T @ b) ** 2 / k) if k > 0 else float("nan")


def max_abs_cosines(u_tuned: np.ndarray, u_base: np.ndarray) -> np.ndarray:
    """For each column u_i of `u_tuned`: max_j |cos(u_i, b_j)| over the columns b_j of `u_base` (unit vectors, so
    |cos| = |u_i . b_j|); 1 = u_i is one of the base's directions, near 0 = a direction the base does not have."""
    return np.abs(np.asarray(u_tuned, np.float64).T @ np.asarray(u_base, np.float64)).max(axis=1)


def intruder_count(top_cosines: np.ndarray, epsilon: float = 0.5) -> int:
    """Intruder dimensions (Shuttleworth et al. 2024, "LoRA vs Full Fine-tuning: An Illusion of Equivalence"): how
    many of W_tuned's top-k left singular vectors u_i have max_j |cos(u_i, b_j)| < epsilon over every left singular
    vector b_j of W_base; `top_cosines` = `max_abs_cosines(U_tuned[:, :k], U_base)`.

    As in the authors' find_intruder_dimensions.py and PEFT's `peft.tuners.lora.intruders`: the SVD is of the merged
    W_tuned = W0 + dW (not of dW), k = 10 and epsilon = 0.5 by default, the left singular vectors of W as torch lays
    out a Linear weight ([out, in]).
    """
    return int((np.asarray(top_cosines) < epsilon).sum())
