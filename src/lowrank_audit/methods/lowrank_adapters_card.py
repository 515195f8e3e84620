"""`lora-xs`'s, `lora-sb`'s and `ffa-lora`'s options and cards (methods/lowrank_adapters.py)."""

from __future__ import annotations

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from .card import MethodCard, MethodOptions


class LowRankAdapterOptions(MethodOptions):
    lr: PositiveFloat = 1e-3
    """AdamW learning rate."""
    rank: PositiveInt = 8
    """Rank r of the frozen factors."""
    target_modules: list[str] | str = "all-linear"
    """Module names (last name component, e.g. q_proj) to adapt, or 'all-linear' (every linear layer but the output head)."""


class LoraXSCard(MethodCard):
    name = "lora-xs"
    description = "LoRA-XS: frozen B, A from the truncated SVD of W0 (B = U S, A = V^T), a trained r x r R between them."
    Options = LowRankAdapterOptions


class LoraSBOptions(LowRankAdapterOptions):
    init_batches: PositiveInt = 4
    """Training batches whose full fine-tuning gradient is accumulated to choose B, A and R."""
    init_lr: NonNegativeFloat = 1e-3
    """Step size of the full (SGD) update that B R A starts from; 0 = start at the base model."""


class LoraSBCard(MethodCard):
    name = "lora-sb"
    description = ("LoRA-SB: frozen B, A from the truncated SVD of the full fine-tuning gradient of the first batches, "
                   "R trained, starting at the rank-r approximation of the first full update.")
    Options = LoraSBOptions


class FfaLoraOptions(LowRankAdapterOptions):
    alpha: PositiveFloat | None = None
    """Scale numerator; default 2 * rank (scale alpha / r = 2, as `lora`)."""


class FfaLoraCard(MethodCard):
    name = "ffa-lora"
    description = "FFA-LoRA: LoRA with A random (Kaiming, as LoRA's) and frozen; only B (zero at start) is trained."
    Options = FfaLoraOptions
