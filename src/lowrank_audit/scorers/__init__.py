"""Toxicity scorers: a registry of classifiers behind one interface (texts -> P(toxic))."""

from ..registry import Registry
from .base import Scorer, ScorerOptions
from .detoxify import DetoxifyScorer
from .hf import HFScorer
from .profanity import ProfanityScorer

SCORERS: Registry[type[Scorer]] = Registry("scorer")
SCORERS.register("profanity", ProfanityScorer)
SCORERS.register("hf", HFScorer)
SCORERS.register("detoxify", DetoxifyScorer)


def build_scorer(options: ScorerOptions) -> Scorer:
    """The scorer named by `options.name` (AuditError with close matches for an unknown name)."""
    return SCORERS.get(options.name)(options)


__all__ = ["SCORERS", "Scorer", "ScorerOptions", "build_scorer"]
