"""`base`: the untrained base model, stored as a run so every metric has its reference row."""

from __future__ import annotations

from pathlib import Path

from torch import nn

from .base import Method
from .base_model_card import BaseModelCard


class BaseModelMethod(BaseModelCard, Method):
    trains = False

    def prepare(self, model: nn.Module) -> nn.Module:
        return model

    def save(self, model: nn.Module, folder: Path) -> None:
        """Nothing was trained, so nothing is saved."""

    def load(self, base: nn.Module, folder: Path) -> nn.Module:
        return base
