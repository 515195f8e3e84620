"""`lora`'s and `dora`'s options and cards (methods/lora.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from .card import MethodCard, PeftOptions


class LoraOptions(PeftOptions):
    rank: PositiveInt = 8
    """Rank r of the update B A."""
    alpha: PositiveFloat | None = None
    """Scale numerator; default 2 * rank, so the scale alpha / r is the same at every rank."""
    dropout: NonNegativeFloat = 0.0
    """Dropout on the adapter input."""
    use_rslora: bool = False
    """Rank-stabilised scaling alpha / sqrt(r)."""
    init: Literal["default", "gaussian", "pissa", "olora"] = "default"
    """Initialisation: default (A Kaiming, B zero), gaussian (A Gaussian), pissa (principal singular vectors of W0), olora (QR of W0)."""


class LoraCard(MethodCard):
    name = "lora"
    description = "LoRA adapters via PEFT: frozen W0 plus a trained rank-r update."
    Options = LoraOptions


class DoraCard(LoraCard):
    name = "dora"
    description = "DoRA via PEFT: LoRA on the direction of W0 plus a trained per-output magnitude."
