"""The Method interface: turn a base model into a trainable one, build its optimizer, hook each step,
save and reload what it trained. Wide enough for adapters (LoRA), full training, and optimizer-side
methods (GaLore), so adding a method is one module and one registry entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import ClassVar

import torch
from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveFloat
from torch import nn


class MethodOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)

    lr: PositiveFloat = 1e-4
    """AdamW learning rate."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay."""


class Method(ABC):
    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
    trains: ClassVar[bool] = True

    def __init__(self, options: MethodOptions) -> None:
        self.options = options

    @property
    def rank(self) -> int | None:
        """The rank this run is swept over (NULL in the store for methods without one)."""
        return None

    def check(self, model: nn.Module) -> None:
        """Raise AuditError if this method cannot be applied to `model` (checked before any training)."""

    @abstractmethod
    def prepare(self, model: nn.Module) -> nn.Module:
        """Make `model` (a private copy of the base) trainable the way this method does."""

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.options.lr, weight_decay=self.options.weight_decay)

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step (e.g. AdaLoRA's rank reallocation)."""

    @abstractmethod
    def save(self, model: nn.Module, folder: Path) -> None:
        """Write what was trained to `folder` as safetensors (a PEFT folder for adapters)."""

    @abstractmethod
    def load(self, base: nn.Module, folder: Path) -> nn.Module:
        """Rebuild the trained model from `base` (a private copy) and what `save` wrote."""


def trainable_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
