"""`base`'s card (methods/base_model.py)."""

from __future__ import annotations

from .card import MethodCard


class BaseModelCard(MethodCard):
    name = "base"
    description = "No fine-tuning: the base model as it is (added to every sweep as the reference)."
