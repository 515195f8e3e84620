"""`full`'s options and card (methods/full.py)."""

from __future__ import annotations

from pydantic import PositiveFloat

from .card import MethodCard, MethodOptions


class FullOptions(MethodOptions):
    lr: PositiveFloat = 5e-5
    """AdamW learning rate."""


class FullCard(MethodCard):
    name = "full"
    description = "Full fine-tuning: every weight trained (the reference)."
    Options = FullOptions
