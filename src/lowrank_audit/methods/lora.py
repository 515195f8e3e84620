"""`lora` and its variant `dora`: low-rank adapters through PEFT (W = W0 + (alpha / r) B A), saved in PEFT format."""

from __future__ import annotations

import dataclasses
import json
import tempfile
from pathlib import Path
from typing import ClassVar

from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file
from torch import nn

from .lora_card import DoraCard, LoraCard
from .peft_base import PeftMethod

INIT = {"default": True, "gaussian": "gaussian", "pissa": "pissa", "olora": "olora"}


class Lora(LoraCard, PeftMethod):
    use_dora: ClassVar[bool] = False

    def peft_config(self) -> LoraConfig:
        o = self.options
        return LoraConfig(
            r=o.rank,
            lora_alpha=o.alpha if o.alpha is not None else 2 * o.rank,
            lora_dropout=o.dropout,
            target_modules=o.target_modules,
            use_rslora=o.use_rslora,
            init_lora_weights=INIT[o.init],
            use_dora=self.use_dora,
            task_type="CAUSAL_LM",
        )

    def structure_config(self) -> LoraConfig:
        return dataclasses.replace(self.peft_config(), init_lora_weights=True)

    @property
    def _moves_base(self) -> bool:
        """PiSSA and OLoRA rewrite W0 at initialisation, so the adapter is saved as a conversion against W0."""
        return self.options.init in ("pissa", "olora")

    @property
    def packable(self) -> bool:
        """Plain LoRA without dropout: DoRA divides by a per-run weight norm, PiSSA and OLoRA rewrite W0 per run, and
        dropout's random masks would depend on where a run's rows sit in the packed batch."""
        return not self.use_dora and not self._moves_base and self.options.dropout == 0

    def prepare(self, model: nn.Module) -> nn.Module:
        model = self._wrap(model, self.peft_config())
        if self._moves_base:
            self._initial = {k: v.detach().clone() for k, v in get_peft_model_state_dict(model).items()}
        return model

    def save(self, model: nn.Module, folder: Path) -> None:
        if not self._moves_base:
            return super().save(model, folder)
        with tempfile.TemporaryDirectory() as initial:
            config = model.peft_config["default"].to_dict()
            config["init_lora_weights"] = True
            Path(initial, "adapter_config.json").write_text(json.dumps(config, default=list))
            save_file(self._initial, str(Path(initial, "adapter_model.safetensors")))
            model.save_pretrained(folder, safe_serialization=True, path_initial_model_for_weight_conversion=initial)


class Dora(DoraCard, Lora):
    use_dora = True
