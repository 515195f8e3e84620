"""`profanity`: the linear classifier shipped inside the PyPI package alt-profanity-check (offline)."""

from __future__ import annotations

import numpy as np

from ..errors import AuditError
from .base import Scorer, ScorerOptions


class ProfanityScorer(Scorer):
    description = "alt-profanity-check's trained linear model (calibrated probability of offensive text); offline."

    def __init__(self, options: ScorerOptions) -> None:
        super().__init__(options)
        try:
            from profanity_check import predict_prob
        except ImportError as e:
            raise AuditError(f"scorer 'profanity' needs the package alt-profanity-check ({e}). "
                             "Install it with: pip install alt-profanity-check") from None
        self._predict_prob = predict_prob

    def _score(self, texts: list[str]) -> np.ndarray:
        return self._predict_prob(texts)
