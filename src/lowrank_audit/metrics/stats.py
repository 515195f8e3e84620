"""Percentile bootstrap intervals (paired: every array is resampled with the same indices)."""

from __future__ import annotations

from typing import Callable, Sequence

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


Factor = tuple[np.ndarray, np.ndarray]
"""A unit the rows are built from: per row, its level (e.g. the template) and the stratum that level is drawn within
(e.g. the lexicon the template belongs to)."""


class _Crossed:
    """Crossed factors coded once: per factor, each row's level code and each stratum's level codes."""

    def __init__(self, factors: Sequence[Factor]) -> None:
        self.codes, self.strata = [], []
        for levels, strata in factors:
            names, codes = np.unique(np.asarray(levels).astype(str), return_inverse=True)
            stratum_of = {}
            for code, stratum in zip(codes.tolist(), np.asarray(strata).astype(str).tolist()):
                stratum_of.setdefault(stratum, set()).add(code)
            self.codes.append((codes, len(names)))
            self.strata.append([np.array(sorted(c)) for _, c in sorted(stratum_of.items())])

    def weights(self, rng: np.random.Generator) -> np.ndarray:
        """One bootstrap draw: per factor, as many levels as each stratum has, drawn with replacement within it; a row's
        weight is the product over factors of how often its level was drawn."""
        weight = np.ones(len(self.codes[0][0]), dtype=np.int64)
        for (codes, n_levels), strata in zip(self.codes, self.strata):
            drawn = np.concatenate([own[rng.integers(0, len(own), size=len(own))] for own in strata])
            weight *= np.bincount(drawn, minlength=n_levels)[codes]
        return weight


def cluster_bootstrap_ci(statistic: Callable[..., float], *samples: np.ndarray, factors: Sequence[Factor],
                         n_resamples: int = 1000, confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of `statistic(*samples)` that resamples the units the rows are built from.

    Rows that share a template or a term are not independent: resampling rows as if they were gives intervals several
    times too narrow. Here every factor's levels are resampled (Owen's pigeonhole bootstrap for crossed factors, the
    levels of each factor drawn within their strata) and each row enters the resample once per draw of its levels.
    Rows are resampled jointly across `samples` (paired); undefined or empty resamples are dropped.
    """
    arrays = [np.asarray(s) for s in samples]
    n = len(arrays[0])
    if any(len(a) != n for a in arrays) or any(len(f[0]) != n or len(f[1]) != n for f in factors):
        raise ValueError("cluster_bootstrap_ci: every sample and factor must have one entry per row")
    if n == 0:
        return float("nan"), float("nan")
    crossed, rng = _Crossed(factors), np.random.default_rng(seed)
    stats = []
    for _ in range(n_resamples):
        idx = np.repeat(np.arange(n), crossed.weights(rng))
        stats.append(statistic(*(a[idx] for a in arrays)) if len(idx) else float("nan"))
    stats = np.array(stats, dtype=np.float64)
    stats = stats[np.isfinite(stats)]
    if len(stats) == 0:
        return float("nan"), float("nan")
    alpha = (1.0 - confidence) / 2.0
    return float(np.quantile(stats, alpha)), float(np.quantile(stats, 1.0 - alpha))
