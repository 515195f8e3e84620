"""`lora`: low-rank adapters through PEFT (W = W0 + (alpha / r) B A), saved in the standard PEFT format."""

from __future__ import annotations

import copy
from pathlib import Path

import torch

from peft import LoraConfig, PeftModel, get_peft_model
from peft.tuners.lora import LoraLayer
from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from ..errors import AuditError
from .base import Method, MethodOptions


class LoraOptions(MethodOptions):
    lr: PositiveFloat = 1e-3
    """AdamW learning rate."""
    rank: PositiveInt = 8
    """Rank r of the update B A."""
    alpha: PositiveFloat | None = None
    """Scale numerator; default 2 * rank, so the scale alpha / r is the same at every rank."""
    dropout: NonNegativeFloat = 0.0
    """Dropout on the adapter input."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or 'all-linear' (every linear layer but the output head)."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(r)."""


class Lora(Method):
    name = "lora"
    description = "LoRA adapters via PEFT: frozen W0 plus a trained rank-r update."
    Options = LoraOptions

    @property
    def rank(self) -> int:
        return self.options.rank

    def _config(self) -> LoraConfig:
        o = self.options
        return LoraConfig(
            r=o.rank,
            lora_alpha=o.alpha if o.alpha is not None else 2 * o.rank,
            lora_dropout=o.dropout,
            target_modules=o.target_modules,
            use_rslora=o.use_rslora,
            task_type="CAUSAL_LM",
        )

    def check(self, model: nn.Module) -> None:
        """Reject a rank larger than an adapted layer's smaller dimension, and targets that match nothing."""
        probe = self._wrap(_clone_structure(model))
        layers = [(name, m) for name, m in probe.named_modules() if isinstance(m, LoraLayer)]
        for name, m in layers:
            limit = min(m.in_features, m.out_features)
            if self.options.rank > limit:
                raise AuditError(
                    f"lora rank {self.options.rank} is larger than layer {name.removeprefix('base_model.model.')} "
                    f"({m.out_features} x {m.in_features}) allows (at most {limit}). Use a rank <= {limit}."
                )

    def prepare(self, model: nn.Module) -> nn.Module:
        return self._wrap(model)

    def _wrap(self, model: nn.Module) -> nn.Module:
        try:
            return get_peft_model(model, self._config())
        except ValueError as e:
            raise AuditError(f"lora target_modules {self.options.target_modules!r}: {e}") from None

    def save(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)

    def load(self, base: nn.Module, folder: Path) -> nn.Module:
        return PeftModel.from_pretrained(base, folder)


def _clone_structure(model: nn.Module) -> nn.Module:
    """A copy of the model on the meta device: same modules and shapes, no memory, for checks."""
    with torch.device("meta"):
        clone = type(model)(copy.deepcopy(model.config))
    return clone
