"""The Method interface: turn a base model into a trainable one, build its optimizer, hook each step,
save and reload what it trained. Wide enough for adapters (LoRA), full training, and optimizer-side
methods (GaLore), so adding a method is its card (methods/card.py), one module and one registry entry.
"""

from __future__ import annotations

import copy
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from torch import nn

from .card import MethodCard, MethodOptions


class Method(MethodCard, ABC):
    """A method's implementation: its card (name, description, options) and what it does to a model."""

    trains: ClassVar[bool] = True
    loss_from_model: ClassVar[bool] = False
    """True when the prepared model adds its own terms to the loss it returns for `labels=` (AdaLoRA's orthogonality
    penalty): the loop then takes that loss instead of the cross-entropy on completion positions only."""
    size_option: ClassVar[str | None] = None
    """The option that sets the number of trainable parameters (chosen by a sweep's `budget.params`)."""

    def __init__(self, options: MethodOptions) -> None:
        self.options = options

    @property
    def rank(self) -> int | None:
        """The rank this run is swept over (NULL in the store for methods without one)."""
        return None

    @property
    def packable(self) -> bool:
        """True when runs of this method can train as one pack over a shared frozen base (train/packed.py): a per-run
        update B A x added to each adapted Linear's output, no per-step hook, no random numbers drawn in training."""
        return False

    def check(self, model: nn.Module) -> None:
        """Raise AuditError if this method cannot be applied to `model` (checked before any training)."""

    @abstractmethod
    def prepare(self, model: nn.Module) -> nn.Module:
        """Make `model` (a private copy of the base) trainable the way this method does."""

    def start(self, model: nn.Module, batches: Iterator[Batch], steps: int) -> None:
        """Called once before the first step with the training batches and the step budget; a resumed run calls it
        again (it must depend only on the seed and the data), then restores its checkpoint."""

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        """AdamW over the trainable parameters, fused: on CPU 3.4x faster than torch's default per-tensor loop for the
        135M weights of a full fine-tune (BENCHMARKS.md); transformers' Trainer defaults to it too."""
        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.AdamW(params, lr=self.options.lr, weight_decay=self.options.weight_decay, fused=True)

    def after_step(self, model: nn.Module, step: int) -> None:
        """Called after every optimizer step, gradients still present (e.g. AdaLoRA's rank reallocation)."""

    def state_dict(self, model: nn.Module) -> dict[str, Any]:
        """Training state a checkpoint must keep besides the trainable parameters and the optimizer's state_dict
        (e.g. AdaLoRA's importance scores): tensors, numbers, strings, lists and dicts only. Default: none."""
        return {}

    def load_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned, on a model prepared and started the same way (resuming a run)."""

    @abstractmethod
    def save(self, model: nn.Module, folder: Path) -> None:
        """Write what was trained to `folder` as safetensors (a PEFT folder for adapters)."""

    @abstractmethod
    def load(self, base: nn.Module, folder: Path) -> nn.Module:
        """Rebuild the trained model from `base` (a private copy) and what `save` wrote."""

    def trainable_count(self, model: nn.Module) -> int:
        """Trainable parameters this method gives `model`, counted on a meta-device copy (no memory, no compute)."""
        clone = meta_clone(model)
        with torch.device("meta"):  # adapters made on meta directly: moving them there loses requires_grad flags
            return trainable_parameters(self.prepare(clone))


Batch = tuple[torch.Tensor, torch.Tensor, torch.Tensor]
"""(input_ids, attention_mask, labels) of one training batch."""


def trainable_parameters(model: nn.Module) -> int:
    """Number of parameters that receive gradients."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def meta_clone(model: nn.Module) -> nn.Module:
    """A copy of the model on the meta device: same modules and shapes, no memory, for checks and counts."""
    with torch.device("meta"):
        return type(model)(copy.deepcopy(model.config))


def optimizer_state_bytes(optimizer: torch.optim.Optimizer) -> int:
    """Bytes held by the optimizer's per-parameter state: its tensors and tensors inside state objects (0 without state)."""
    seen: set[int] = set()

    def size(value: object) -> int:
        if isinstance(value, torch.Tensor):
            if id(value) in seen:
                return 0
            seen.add(id(value))
            return value.numel() * value.element_size()
        if isinstance(value, dict):
            return sum(size(v) for v in value.values())
        if isinstance(value, (list, tuple)):
            return sum(size(v) for v in value)
        if hasattr(value, "__dict__"):
            return size(vars(value))
        return 0

    return sum(size(state) for state in getattr(optimizer, "state", {}).values())
