"""`hf`: any transformers sequence-classification model (local folder or hub id); the toxic label is configured."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import AuditError
from .base import Scorer, ScorerOptions


class HFScorer(Scorer):
    description = "A transformers text-classification model (options: model = folder or hub id, toxic_label)."

    def __init__(self, options: ScorerOptions) -> None:
        super().__init__(options)
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        if not options.model:
            raise AuditError("scorer 'hf' needs options.scorer.model: a local folder or a hub id of a text classifier.")
        source = str(Path(options.model).expanduser()) if Path(options.model).expanduser().exists() else options.model
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=False)
            self.model = AutoModelForSequenceClassification.from_pretrained(
                source, trust_remote_code=False, use_safetensors=True).eval()
        except (OSError, ValueError) as e:
            raise AuditError(f"scorer 'hf': could not load {options.model!r}: {str(e).splitlines()[0]} "
                             "(a hub id needs network access or a filled HF cache; weights must be safetensors).") from None
        labels = self.model.config.label2id
        if options.toxic_label not in labels:
            raise AuditError(f"scorer 'hf': {options.model!r} has no label {options.toxic_label!r}; its labels are "
                             f"{sorted(labels)}. Set options.scorer.toxic_label to the one that means toxic.")
        self.index = labels[options.toxic_label]
        self.multi_label = self.model.config.problem_type == "multi_label_classification"

    def _score(self, texts: list[str]) -> np.ndarray:
        import torch  # as transformers above: only when an hf scorer is built, so a config naming it loads neither

        enc = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt")
        with torch.no_grad():
            logits = self.model(**enc).logits.double()
        probs = torch.sigmoid(logits) if self.multi_label else torch.softmax(logits, dim=-1)
        return probs[:, self.index].numpy()
