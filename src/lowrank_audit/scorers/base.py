"""The scorer interface: texts in, probability that each text is toxic out."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, PositiveInt


class ScorerOptions(BaseModel):
    """Which scorer and how it is set up (a task option)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

    name: str = "profanity"
    """profanity (alt-profanity-check, offline) | hf (a text-classification model) | detoxify."""
    model: str | None = None
    """hf: local folder or hub id; detoxify: the variant (original, unbiased, multilingual)."""
    toxic_label: str = "toxic"
    """hf: the classifier's label that means toxic."""
    batch_size: PositiveInt = 32


class Scorer(ABC):
    """A toxicity classifier behind one method: `score(texts) -> probabilities in [0, 1]`."""

    description: ClassVar[str]

    def __init__(self, options: ScorerOptions) -> None:
        self.options = options

    @abstractmethod
    def _score(self, texts: list[str]) -> np.ndarray:
        """Probabilities of the toxic class for one batch of texts."""

    def score(self, texts: Sequence[str]) -> np.ndarray:
        """P(toxic) for every text, float64 [len(texts)]; scored in batches of `options.batch_size`."""
        texts = list(texts)
        step = self.options.batch_size
        parts = [np.asarray(self._score(texts[i:i + step]), dtype=np.float64) for i in range(0, len(texts), step)]
        return np.concatenate(parts) if parts else np.zeros(0)
