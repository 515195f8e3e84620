"""The PEFT method zoo: thin wrappers over `peft` tuners, each its options and its PEFT config, nothing else.

Trainable parameters per adapted (out x in) layer (tests/test_method_zoo.py checks each from layer shapes):
adalora r (in + out + 1); randlora n (r + min(in, out)) with n = ceil(min(in, out) / r); vera r + out;
vblora r * num_vectors * (in + out) / vector_length plus one shared bank num_vectors * vector_length;
miss r * out; loha 2 r (in + out); lokr the two Kronecker factors; ia3 out (in for feed-forward layers);
hra r * in; fourierft n_frequency.
"""

from __future__ import annotations

from typing import Any, Iterator

from peft import (AdaLoraConfig, FourierFTConfig, HRAConfig, IA3Config, LoHaConfig, LoKrConfig, MissConfig,
                  RandLoraConfig, VBLoRAConfig, VeraConfig)
from pydantic import Field, NonNegativeFloat, PositiveFloat, PositiveInt
from torch import nn

from ..errors import AuditError
from .base import Batch, MethodOptions
from .peft_base import PeftMethod, PeftOptions

TASK = "CAUSAL_LM"


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


class AdaLora(PeftMethod):
    name = "adalora"
    loss_from_model = True
    description = "AdaLoRA via PEFT: SVD-form adapters whose ranks are pruned to a budget during training."
    Options = AdaLoraOptions

    def peft_config(self, steps: int = 1000) -> AdaLoraConfig:
        """The config for a run of `steps` steps (the schedule is set again from the real budget in `start`)."""
        o = self.options
        tinit, tfinal = int(o.warmup * steps), int(o.final * steps)
        if tinit + tfinal >= steps:
            raise AuditError(f"adalora: warmup {o.warmup} + final {o.final} leave no pruning steps in {steps} steps; "
                             "lower them or train longer.")
        return AdaLoraConfig(
            init_r=o.rank, target_r=o.target_rank or max(1, round(2 * o.rank / 3)),
            lora_alpha=o.alpha if o.alpha is not None else 2 * o.rank, target_modules=o.target_modules,
            tinit=tinit, tfinal=tfinal, deltaT=o.delta_t, beta1=o.beta1, beta2=o.beta2,
            orth_reg_weight=o.orth_reg_weight, total_step=steps, task_type=TASK,
        )

    def start(self, model: nn.Module, batches: Iterator[Batch], steps: int) -> None:
        real = self.peft_config(steps)
        config = model.peft_config["default"]
        config.total_step, config.tinit, config.tfinal = real.total_step, real.tinit, real.tfinal

    def after_step(self, model: nn.Module, step: int) -> None:
        model.base_model.update_and_allocate(step)

    def state_dict(self, model: nn.Module) -> dict[str, Any]:
        """The rank allocator's smoothed importance scores and the rank pattern chosen so far."""
        allocator = model.base_model.rankallocator
        return {"ipt": allocator.ipt, "exp_avg_ipt": allocator.exp_avg_ipt, "exp_avg_unc": allocator.exp_avg_unc,
                "rank_pattern": model.peft_config["default"].rank_pattern}

    def load_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Put the saved scores (on the parameters' device) and rank pattern back into the allocator and config."""
        allocator = model.base_model.rankallocator
        params = dict(model.base_model.model.named_parameters())  # the allocator's names: the wrapped model's
        allocator.ipt, allocator.exp_avg_ipt, allocator.exp_avg_unc = (
            {name: t.to(params[name].device) for name, t in state[key].items()} for key in ("ipt", "exp_avg_ipt", "exp_avg_unc"))
        model.peft_config["default"].rank_pattern = state["rank_pattern"]


class RandLoraOptions(PeftOptions):
    rank: PositiveInt = 32
    """Rank of each shared random basis; fewer, larger bases as it grows (fewer trainable parameters)."""
    alpha: PositiveFloat | None = None
    """Scale numerator; default 20 * rank (PEFT's ratio)."""
    dropout: NonNegativeFloat = 0.0
    """Dropout on the adapter input."""
    sparse: bool = False
    """Sparse ternary random bases instead of dense ones."""


class RandLora(PeftMethod):
    name = "randlora"
    description = "RandLoRA via PEFT: full-rank update from shared frozen random bases with trained diagonal scales."
    Options = RandLoraOptions

    def peft_config(self) -> RandLoraConfig:
        o = self.options
        return RandLoraConfig(r=o.rank, randlora_alpha=o.alpha if o.alpha is not None else 20 * o.rank,
                              randlora_dropout=o.dropout, sparse=o.sparse, target_modules=o.target_modules,
                              task_type=TASK)


class VeraOptions(PeftOptions):
    lr: PositiveFloat = 1e-2
    """AdamW learning rate."""
    rank: PositiveInt = 256
    """Rank of the shared frozen random matrices."""
    d_initial: PositiveFloat = 0.1
    """Initial value of the trained scaling vector d."""
    dropout: NonNegativeFloat = 0.0
    """Dropout on the adapter input."""


class Vera(PeftMethod):
    name = "vera"
    description = "VeRA via PEFT: shared frozen random low-rank matrices, trained per-layer scaling vectors."
    Options = VeraOptions

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        return None

    def peft_config(self) -> VeraConfig:
        o = self.options
        return VeraConfig(r=o.rank, d_initial=o.d_initial, vera_dropout=o.dropout, target_modules=o.target_modules,
                          task_type=TASK)


class VBLoraOptions(PeftOptions):
    rank: PositiveInt = 4
    """Rank of the update; each rank-1 slice is mixed from the bank."""
    num_vectors: PositiveInt = 256
    """Vectors in the shared trained bank (sets the trainable parameters, with the rank)."""
    vector_length: PositiveInt = 32
    """Length of each bank vector; must divide every adapted layer's dimensions."""
    topk: PositiveInt = 2
    """Bank vectors mixed into each sub-vector."""


class VBLora(PeftMethod):
    name = "vblora"
    description = "VB-LoRA via PEFT: low-rank factors composed from a shared trained vector bank (top-k mixture)."
    Options = VBLoraOptions
    size_option = "num_vectors"

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        return None

    def peft_config(self) -> VBLoRAConfig:
        o = self.options
        return VBLoRAConfig(r=o.rank, num_vectors=o.num_vectors, vector_length=o.vector_length, topk=o.topk,
                            target_modules=o.target_modules, task_type=TASK)


class MissOptions(PeftOptions):
    rank: PositiveInt = 64
    """Rows of the trained shard (r x out), shared across the input's blocks."""
    dropout: NonNegativeFloat = 0.0
    """Dropout on the adapter input."""


class Miss(PeftMethod):
    name = "miss"
    description = "MiSS (formerly Bone) via PEFT: a trained shard shared by the weight's blocks."
    Options = MissOptions

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        """None: PEFT itself rejects a rank larger than the layer's input."""
        return None

    def peft_config(self) -> MissConfig:
        o = self.options
        return MissConfig(r=o.rank, miss_dropout=o.dropout, target_modules=o.target_modules, task_type=TASK)


class LycorisOptions(PeftOptions):
    rank: PositiveInt = 8
    """Rank of the factors."""
    alpha: PositiveFloat | None = None
    """Scale numerator; default rank (scale 1)."""
    rank_dropout: NonNegativeFloat = 0.0
    """Dropout on the update's rank dimension."""
    module_dropout: NonNegativeFloat = 0.0
    """Probability of skipping the adapter in a training step."""


class LoHa(PeftMethod):
    name = "loha"
    description = "LoHa via PEFT: the update is the Hadamard product of two rank-r products."
    Options = LycorisOptions

    def peft_config(self) -> LoHaConfig:
        o = self.options
        return LoHaConfig(r=o.rank, alpha=o.alpha if o.alpha is not None else o.rank, rank_dropout=o.rank_dropout,
                          module_dropout=o.module_dropout, target_modules=o.target_modules, task_type=TASK)


class LoKrOptions(LycorisOptions):
    decompose_both: bool = False
    """Also factor the left Kronecker factor into a rank-r product."""
    decompose_factor: int = -1
    """Kronecker factor size; -1 = as square as the dimensions allow."""


class LoKr(PeftMethod):
    name = "lokr"
    description = "LoKr via PEFT: the update is a Kronecker product of a small and a low-rank factor."
    Options = LoKrOptions

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        return None

    def peft_config(self) -> LoKrConfig:
        o = self.options
        return LoKrConfig(r=o.rank, alpha=o.alpha if o.alpha is not None else o.rank, rank_dropout=o.rank_dropout,
                          module_dropout=o.module_dropout, decompose_both=o.decompose_both,
                          decompose_factor=o.decompose_factor, target_modules=o.target_modules, task_type=TASK)


class IA3Options(MethodOptions):
    lr: PositiveFloat = 1e-2
    """AdamW learning rate."""
    target_modules: list[str] | str | None = None
    """Module names to scale; default PEFT's choice for the architecture (Llama: k, v and down projections)."""
    feedforward_modules: list[str] | str | None = None
    """Targets whose input (not output) is scaled; default PEFT's choice for the architecture."""


class IA3(PeftMethod):
    name = "ia3"
    description = "(IA)3 via PEFT: trained vectors rescale chosen activations (fixed size, no rank)."
    Options = IA3Options
    size_option = None

    def peft_config(self) -> IA3Config:
        o = self.options
        return IA3Config(target_modules=o.target_modules, feedforward_modules=o.feedforward_modules, task_type=TASK)


class HraOptions(PeftOptions):
    rank: PositiveInt = 8
    """Number of chained Householder reflections (even, for the symmetric initialisation)."""
    apply_gs: bool = False
    """Gram-Schmidt orthogonalise the reflection vectors."""


class Hra(PeftMethod):
    name = "hra"
    description = "HRA via PEFT: W0 times a chain of r trained Householder reflections."
    Options = HraOptions

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        return in_features

    def peft_config(self) -> HRAConfig:
        o = self.options
        return HRAConfig(r=o.rank, apply_GS=o.apply_gs, target_modules=o.target_modules, task_type=TASK)


class FourierFTOptions(PeftOptions):
    lr: PositiveFloat = 1e-2
    """AdamW learning rate."""
    n_frequency: PositiveInt = 1000
    """Trained spectral coefficients per layer, at random fixed frequencies."""
    scaling: PositiveFloat = 150.0
    """Scale of the update (the inverse DFT of the sparse spectrum)."""
    random_loc_seed: int = 777
    """Seed of the frequency locations."""


class FourierFT(PeftMethod):
    name = "fourierft"
    description = "FourierFT via PEFT: the update is the inverse DFT of a few trained spectral coefficients (zero at start)."
    Options = FourierFTOptions
    size_option = "n_frequency"

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        """None: PEFT itself rejects more frequencies than the layer has entries."""
        return None

    def peft_config(self) -> FourierFTConfig:
        o = self.options
        return FourierFTConfig(n_frequency=o.n_frequency, scaling=o.scaling, random_loc_seed=o.random_loc_seed,
                               init_weights=True, target_modules=o.target_modules, task_type=TASK)


PEFT_ZOO = (AdaLora, RandLora, Vera, VBLora, Miss, LoHa, LoKr, IA3, Hra, FourierFT)
