"""`detoxify`: the Detoxify classifiers, when the package and its weights are available."""

from __future__ import annotations

import importlib.util

import numpy as np

from ..errors import AuditError
from .base import Scorer, ScorerOptions


class DetoxifyScorer(Scorer):
    description = "Detoxify (options: model = original | unbiased | multilingual); needs the package and its weights."

    def __init__(self, options: ScorerOptions) -> None:
        super().__init__(options)
        if importlib.util.find_spec("detoxify") is None:
            raise AuditError("scorer 'detoxify' needs the package detoxify, which is not installed. "
                             "Install it (pip install detoxify) and fetch its weights once with network access, "
                             "or use scorer 'profanity' (offline) or 'hf' with a local classifier.")
        from detoxify import Detoxify

        try:
            self.model = Detoxify(options.model or "original", device="cpu")
        except Exception as e:  # weights missing offline surface as many different exception types
            raise AuditError(f"scorer 'detoxify': could not load the {options.model or 'original'!r} weights "
                             f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}). Run once with network "
                             "access to cache them, or use scorer 'profanity' or 'hf'.") from None

    def _score(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self.model.predict(texts)["toxicity"])
