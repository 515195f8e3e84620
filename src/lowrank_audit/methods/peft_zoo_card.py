"""The PEFT zoo's options and cards (methods/peft_zoo.py)."""

from __future__ import annotations

from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt

from .card import MethodCard, MethodOptions, PeftOptions


class AdaLoraOptions(PeftOptions):
    rank: PositiveInt = 12
    """Initial rank of every adapted layer (sets the trainable parameters)."""
    target_rank: PositiveInt | None = None
    """Average rank left after budget allocation; default two thirds of `rank`."""
    alpha: PositiveFloat | None = None
    """Scale numerator; default 2 * rank."""
    warmup: float = Field(0.1, ge=0.0, lt=1.0)
    """Share of the steps trained at the initial rank before pruning starts (AdaLoRA's tinit)."""
    final: float = Field(0.2, ge=0.0, lt=1.0)
    """Share of the steps trained at the final ranks after pruning ends (AdaLoRA's tfinal)."""
    delta_t: PositiveInt = 1
    """Steps between two budget allocations."""
    beta1: float = Field(0.85, ge=0.0, lt=1.0)
    """EMA coefficient of the sensitivity."""
    beta2: float = Field(0.85, ge=0.0, lt=1.0)
    """EMA coefficient of the uncertainty."""
    orth_reg_weight: NonNegativeFloat = 0.5
    """Weight of the orthogonality penalty on P and Q."""


class AdaLoraCard(MethodCard):
    name = "adalora"
    description = "AdaLoRA via PEFT: SVD-form adapters whose ranks are pruned to a budget during training."
    Options = AdaLoraOptions


class RandLoraOptions(PeftOptions):
    rank: PositiveInt = 32
    """Rank of each shared random basis; fewer, larger bases as it grows (fewer trainable parameters)."""
    alpha: PositiveFloat | None = None
    """Scale numerator; default 20 * rank (PEFT's ratio)."""
    dropout: NonNegativeFloat = 0.0
    """Dropout on the adapter input."""
    sparse: bool = False
    """Sparse ternary random bases instead of dense ones."""


class RandLoraCard(MethodCard):
    name = "randlora"
    description = "RandLoRA via PEFT: full-rank update from shared frozen random bases with trained diagonal scales."
    Options = RandLoraOptions


class VeraOptions(PeftOptions):
    lr: PositiveFloat = 1e-2
    """AdamW learning rate."""
    rank: PositiveInt = 256
    """Rank of the shared frozen random matrices."""
    d_initial: PositiveFloat = 0.1
    """Initial value of the trained scaling vector d."""
    dropout: NonNegativeFloat = 0.0
    """Dropout on the adapter input."""


class VeraCard(MethodCard):
    name = "vera"
    description = "VeRA via PEFT: shared frozen random low-rank matrices, trained per-layer scaling vectors."
    Options = VeraOptions


class VBLoraOptions(PeftOptions):
    rank: PositiveInt = 4
    """Rank of the update; each rank-1 slice is mixed from the bank."""
    num_vectors: PositiveInt = 256
    """Vectors in the shared trained bank (sets the trainable parameters, with the rank)."""
    vector_length: PositiveInt = 32
    """Length of each bank vector; must divide every adapted layer's dimensions."""
    topk: PositiveInt = 2
    """Bank vectors mixed into each sub-vector."""


class VBLoraCard(MethodCard):
    name = "vblora"
    description = "VB-LoRA via PEFT: low-rank factors composed from a shared trained vector bank (top-k mixture)."
    Options = VBLoraOptions


class MissOptions(PeftOptions):
    rank: PositiveInt = 64
    """Rows of the trained shard (r x out), shared across the input's blocks."""
    dropout: NonNegativeFloat = 0.0
    """Dropout on the adapter input."""


class MissCard(MethodCard):
    name = "miss"
    description = "MiSS (formerly Bone) via PEFT: a trained shard shared by the weight's blocks."
    Options = MissOptions


class LycorisOptions(PeftOptions):
    rank: PositiveInt = 8
    """Rank of the factors."""
    alpha: PositiveFloat | None = None
    """Scale numerator; default rank (scale 1)."""
    rank_dropout: NonNegativeFloat = 0.0
    """Dropout on the update's rank dimension."""
    module_dropout: NonNegativeFloat = 0.0
    """Probability of skipping the adapter in a training step."""


class LoHaCard(MethodCard):
    name = "loha"
    description = "LoHa via PEFT: the update is the Hadamard product of two rank-r products."
    Options = LycorisOptions


class LoKrOptions(LycorisOptions):
    decompose_both: bool = False
    """Also factor the left Kronecker factor into a rank-r product."""
    decompose_factor: int = -1
    """Kronecker factor size; -1 = as square as the dimensions allow."""


class LoKrCard(MethodCard):
    name = "lokr"
    description = "LoKr via PEFT: the update is a Kronecker product of a small and a low-rank factor."
    Options = LoKrOptions


class IA3Options(MethodOptions):
    lr: PositiveFloat = 1e-2
    """AdamW learning rate."""
    target_modules: list[str] | str | None = None
    """Module names to scale; default PEFT's choice for the architecture (Llama: k, v and down projections)."""
    feedforward_modules: list[str] | str | None = None
    """Targets whose input (not output) is scaled; default PEFT's choice for the architecture."""


class IA3Card(MethodCard):
    name = "ia3"
    description = "(IA)3 via PEFT: trained vectors rescale chosen activations (fixed size, no rank)."
    Options = IA3Options


class HraOptions(PeftOptions):
    rank: PositiveInt = 8
    """Number of chained Householder reflections (even, for the symmetric initialisation)."""
    apply_gs: bool = False
    """Gram-Schmidt orthogonalise the reflection vectors."""


class HraCard(MethodCard):
    name = "hra"
    description = "HRA via PEFT: W0 times a chain of r trained Householder reflections."
    Options = HraOptions


class FourierFTOptions(PeftOptions):
    lr: PositiveFloat = 1e-2
    """AdamW learning rate."""
    n_frequency: PositiveInt = 1000
    """Trained spectral coefficients per layer, at random fixed frequencies."""
    scaling: PositiveFloat = 150.0
    """Scale of the update (the inverse DFT of the sparse spectrum)."""
    random_loc_seed: int = 777
    """Seed of the frequency locations."""


class FourierFTCard(MethodCard):
    name = "fourierft"
    description = "FourierFT via PEFT: the update is the inverse DFT of a few trained spectral coefficients (zero at start)."
    Options = FourierFTOptions
