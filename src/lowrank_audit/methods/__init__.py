"""Method registry: each method's card (name, description, options; imports no torch) and the path of its
implementation, imported only when a run is built. Adding a method: its card, its module, one entry here."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ..registry import Components
from .base_model_card import BaseModelCard
from .card import MethodCard, MethodOptions
from .frugal_card import FrugalCard
from .full_card import FullCard
from .galore_card import GaLoreCard
from .lora_card import DoraCard, LoraCard
from .lowrank_adapters_card import FfaLoraCard, LoraSBCard, LoraXSCard
from .peft_zoo_card import (AdaLoraCard, FourierFTCard, HraCard, IA3Card, LoHaCard, LoKrCard, MissCard, RandLoraCard,
                            VBLoraCard, VeraCard)

if TYPE_CHECKING:
    from .base import Method

# bitsandbytes (a dependency of galore-torch, imported by peft when present) warns at import about a 4-bit
# CPU kernel this project never uses
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

METHODS: Components[type[MethodCard], type[Method]] = Components("method")
for _card, _path in (
    (BaseModelCard, "base_model:BaseModelMethod"), (FullCard, "full:FullFineTuning"), (LoraCard, "lora:Lora"),
    (DoraCard, "lora:Dora"), (AdaLoraCard, "peft_zoo:AdaLora"), (RandLoraCard, "peft_zoo:RandLora"),
    (VeraCard, "peft_zoo:Vera"), (VBLoraCard, "peft_zoo:VBLora"), (MissCard, "peft_zoo:Miss"),
    (LoHaCard, "peft_zoo:LoHa"), (LoKrCard, "peft_zoo:LoKr"), (IA3Card, "peft_zoo:IA3"), (HraCard, "peft_zoo:Hra"),
    (FourierFTCard, "peft_zoo:FourierFT"), (GaLoreCard, "galore:GaLore"), (FrugalCard, "frugal:FrugalMethod"),
    (LoraXSCard, "lowrank_adapters:LoraXS"), (LoraSBCard, "lowrank_adapters:LoraSB"),
    (FfaLoraCard, "lowrank_adapters:FfaLora"),
):
    METHODS.register_lazy(_card, f"{__name__}.{_path}")

_FROM_BASE = ("Method", "optimizer_state_bytes", "trainable_parameters")


def __getattr__(name: str) -> Any:
    """The names of methods/base.py (torch), imported on first use."""
    if name in _FROM_BASE:
        from . import base

        return getattr(base, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["METHODS", "Method", "MethodCard", "MethodOptions", "optimizer_state_bytes", "trainable_parameters"]
