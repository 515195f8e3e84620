"""The PEFT method zoo: thin wrappers over `peft` tuners, each its PEFT config, nothing else (their options and cards:
methods/peft_zoo_card.py).

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
from torch import nn

from ..errors import AuditError
from .base import Batch
from .peft_base import PeftMethod
from .peft_zoo_card import (AdaLoraCard, FourierFTCard, HraCard, IA3Card, LoHaCard, LoKrCard, MissCard, RandLoraCard,
                            VBLoraCard, VeraCard)

TASK = "CAUSAL_LM"


class AdaLora(AdaLoraCard, PeftMethod):
    loss_from_model = True

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


class RandLora(RandLoraCard, PeftMethod):
    def peft_config(self) -> RandLoraConfig:
        o = self.options
        return RandLoraConfig(r=o.rank, randlora_alpha=o.alpha if o.alpha is not None else 20 * o.rank,
                              randlora_dropout=o.dropout, sparse=o.sparse, target_modules=o.target_modules,
                              task_type=TASK)


class Vera(VeraCard, PeftMethod):
    def size_limit(self, out_features: int, in_features: int) -> int | None:
        return None

    def peft_config(self) -> VeraConfig:
        o = self.options
        return VeraConfig(r=o.rank, d_initial=o.d_initial, vera_dropout=o.dropout, target_modules=o.target_modules,
                          task_type=TASK)


class VBLora(VBLoraCard, PeftMethod):
    size_option = "num_vectors"

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        return None

    def peft_config(self) -> VBLoRAConfig:
        o = self.options
        return VBLoRAConfig(r=o.rank, num_vectors=o.num_vectors, vector_length=o.vector_length, topk=o.topk,
                            target_modules=o.target_modules, task_type=TASK)


class Miss(MissCard, PeftMethod):
    def size_limit(self, out_features: int, in_features: int) -> int | None:
        """None: PEFT itself rejects a rank larger than the layer's input."""
        return None

    def peft_config(self) -> MissConfig:
        o = self.options
        return MissConfig(r=o.rank, miss_dropout=o.dropout, target_modules=o.target_modules, task_type=TASK)


class LoHa(LoHaCard, PeftMethod):
    def peft_config(self) -> LoHaConfig:
        o = self.options
        return LoHaConfig(r=o.rank, alpha=o.alpha if o.alpha is not None else o.rank, rank_dropout=o.rank_dropout,
                          module_dropout=o.module_dropout, target_modules=o.target_modules, task_type=TASK)


class LoKr(LoKrCard, PeftMethod):
    def size_limit(self, out_features: int, in_features: int) -> int | None:
        return None

    def peft_config(self) -> LoKrConfig:
        o = self.options
        return LoKrConfig(r=o.rank, alpha=o.alpha if o.alpha is not None else o.rank, rank_dropout=o.rank_dropout,
                          module_dropout=o.module_dropout, decompose_both=o.decompose_both,
                          decompose_factor=o.decompose_factor, target_modules=o.target_modules, task_type=TASK)


class IA3(IA3Card, PeftMethod):
    size_option = None

    def peft_config(self) -> IA3Config:
        o = self.options
        return IA3Config(target_modules=o.target_modules, feedforward_modules=o.feedforward_modules, task_type=TASK)


class Hra(HraCard, PeftMethod):
    def size_limit(self, out_features: int, in_features: int) -> int | None:
        return in_features

    def peft_config(self) -> HRAConfig:
        o = self.options
        return HRAConfig(r=o.rank, apply_GS=o.apply_gs, target_modules=o.target_modules, task_type=TASK)


class FourierFT(FourierFTCard, PeftMethod):
    size_option = "n_frequency"

    def size_limit(self, out_features: int, in_features: int) -> int | None:
        """None: PEFT itself rejects more frequencies than the layer has entries."""
        return None

    def peft_config(self) -> FourierFTConfig:
        o = self.options
        return FourierFTConfig(n_frequency=o.n_frequency, scaling=o.scaling, random_loc_seed=o.random_loc_seed,
                               init_weights=True, target_modules=o.target_modules, task_type=TASK)


PEFT_ZOO = (AdaLora, RandLora, Vera, VBLora, Miss, LoHa, LoKr, IA3, Hra, FourierFT)
