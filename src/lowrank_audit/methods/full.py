"""`full`: full fine-tuning, the reference every low-rank method is compared against."""

from __future__ import annotations

from pathlib import Path

from safetensors.torch import load_file
from torch import nn

from .base import Method
from .full_card import FullCard


class FullFineTuning(FullCard, Method):
    def prepare(self, model: nn.Module) -> nn.Module:
        for p in model.parameters():
            p.requires_grad_(True)
        return model

    def save(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)

    def load(self, base: nn.Module, folder: Path) -> nn.Module:
        # strict: a full fine-tune must restore every weight of the base architecture
        state = load_file(folder / "model.safetensors")
        missing, unexpected = base.load_state_dict(state, strict=False)
        tied = {k for k in missing if "lm_head" in k and getattr(base.config, "tie_word_embeddings", False)}
        if set(missing) - tied or unexpected:
            raise ValueError(f"{folder}: weights do not match the base model (missing {missing}, unexpected {unexpected})")
        return base
