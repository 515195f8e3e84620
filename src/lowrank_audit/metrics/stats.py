"""Percentile bootstrap intervals (paired: every array is resampled with the same indices)."""

from __future__ import annotations

from typing import Callable

import numpy as np


def bootstrap_ci(
    statistic: Callable[..., float],
    *samples: np.ndarray,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*samples)`, resampling the rows of all samples jointly.

    Joint resampling makes it a paired bootstrap: when the arrays hold two methods' values on the same
    prompts, the interval of their difference accounts for the pairing. Undefined resamples (NaN) are
    dropped; if all are undefined the interval is (nan, nan).
    """
    arrays = [np.asarray(s) for s in samples]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays):
        raise ValueError("bootstrap_ci: all samples must have the same length (they are paired)")
    if n == 0:
        return float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    stats = np.array([statistic(*(a[i] for a in arrays)) for i in idx], dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    if len(stats) == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))


def paired_difference(a: np.ndarray, b: np.ndarray, n_resamples: int = 1000, confidence: float = 0.95,
                      seed: int = 0) -> tuple[float, float, float]:
    """mean(a) - mean(b) over paired units (the same prompts) with its paired percentile bootstrap interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    lo, hi = bootstrap_ci(lambda x, y: float(x.mean() - y.mean()), a, b, n_resamples=n_resamples,
                          confidence=confidence, seed=seed)
    return float(a.mean() - b.mean()), lo, hi
