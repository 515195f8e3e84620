"""The shared base of every method implemented by a `peft` tuner: wrap, check, save and load in PEFT format."""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import ClassVar

from peft import PeftConfig, PeftModel, get_peft_model
from peft.tuners.tuners_utils import BaseTunerLayer
import torch
from torch import nn

from ..errors import AuditError
from .base import Method, meta_clone, trainable_parameters


class PeftMethod(Method):
    """A PEFT tuner: subclasses give the options and build the PEFT config; adapters save as PEFT folders."""

    size_option: ClassVar[str | None] = "rank"

    @property
    def rank(self) -> int | None:
        return getattr(self.options, "rank", None)

    @abstractmethod
    def peft_config(self) -> PeftConfig:
        """The PEFT config these options describe."""

    def structure_config(self) -> PeftConfig:
        """The config of the same adapter shapes that initialises on the meta device (for checks and counts)."""
        return self.peft_config()

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        """Largest value of the size option an (out x in) layer allows; None = no limit."""
        return min(out_features, in_features)

    def check(self, model: nn.Module) -> None:
        """Reject a size larger than an adapted layer allows, and targets that match nothing."""
        probe = self._wrap(meta_clone(model), self.structure_config())
        if self.size_option is None:
            return
        size = getattr(self.options, self.size_option)
        for name, m in probe.named_modules():
            if not isinstance(m, BaseTunerLayer):
                continue
            base = m.get_base_layer()
            limit = self.size_limit(base.out_features, base.in_features)
            if limit is not None and size > limit:
                raise AuditError(
                    f"{self.name} {self.size_option} {size} is larger than layer "
                    f"{name.removeprefix('base_model.model.')} ({base.out_features} x {base.in_features}) allows "
                    f"(at most {limit}). Use a {self.size_option} <= {limit}."
                )

    def prepare(self, model: nn.Module) -> nn.Module:
        return self._wrap(model, self.peft_config())

    def trainable_count(self, model: nn.Module) -> int:
        clone = meta_clone(model)
        with torch.device("meta"):
            return trainable_parameters(self._wrap(clone, self.structure_config()))

    def _wrap(self, model: nn.Module, config: PeftConfig) -> nn.Module:
        try:
            return get_peft_model(model, config)
        except ValueError as e:
            raise AuditError(f"{self.name} (target_modules {getattr(self.options, 'target_modules', None)!r}): {e}") from None

    def save(self, model: nn.Module, folder: Path) -> None:
        model.save_pretrained(folder, safe_serialization=True)

    def load(self, base: nn.Module, folder: Path) -> nn.Module:
        return PeftModel.from_pretrained(base, folder)
