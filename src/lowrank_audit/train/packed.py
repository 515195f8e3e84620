"""Packed training: several LoRA runs over one shared frozen base, one forward and one backward per step.

Each step stacks every run's own batch (its own seed's data order, drawn as `train` draws it) into one batch; each
adapted Linear computes the shared W0 x for all rows and run i's s_i B_i A_i x for run i's rows only.
Each run keeps its own PEFT model (its adapter modules, its base sharing the pack's tensors), its own optimizer built by
its method, its own learning rate, scale and gradient clipping, so it ends with the weights it would have had alone
and saves as a standard PEFT folder. A run whose loss stops being finite leaves the pack with its step; the rest go on.

Why a layer of our own: PEFT's mixed-batch forward (`adapter_names=`) refuses training mode and loops over adapters
per layer (the per-operation overhead a pack removes); torch.func's `stack_module_state` + `vmap` needs equal shapes
(one rank), gives one stacked tensor where each run needs its own optimizer over its own parameters, and would vmap
transformers' whole forward (mask building, `logits_to_keep`) for what is one batched matmul per rank and layer.
"""

from __future__ import annotations

import copy
import itertools
import logging
import math
import time
from dataclasses import dataclass
from typing import Sequence

import torch
from peft.tuners.lora import LoraLayer
from peft.tuners.lora import Linear as LoraLinear
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase

from ..config.spec import BudgetSpec
from ..errors import AuditError
from ..methods.base import Method, optimizer_state_bytes
from ..models.precision import Precision
from ..records import Example
from .loop import (IGNORE, TrainingDiverged, TrainResult, batches, completion_logits, encode_examples, lr_schedule,
                   make_accelerator, token_loss)

PEFT_PREFIX = "base_model.model."

logger = logging.getLogger(__name__)


@dataclass
class PackMember:
    """One run of a pack: its method (packable), its training examples and seed."""

    method: Method
    examples: Sequence[Example]
    seed: int
    label: str = "run"


@dataclass
class PackOutcome:
    """What a run of a pack ended with: its trained PEFT model (whose base shares the given base's tensors) and its
    training result, or the divergence that stopped it."""

    model: nn.Module
    result: TrainResult
    error: TrainingDiverged | None = None


class PackedLoraLinear(nn.Module):
    """A frozen Linear shared by a pack plus each active run's LoRA update on that run's rows of the batch.

    Runs of one rank share a batched matmul; a rank held by one run takes PEFT's own product, so a lone run's numbers.
    Zero-padding every rank to the largest (one batched matmul per layer) measured 1.26-1.45x against
    one at a time in bf16 but 0.84-0.93x in fp32 on the default model, and rounded the small ranks differently (rank 1
    1e-4 relative from its lone twin after 10 fp32 steps); this layer measured 0.93-1.04x (1.35x for a tuning grid's
    same-rank runs on an AMX CPU) and bitwise equal in fp32 (in bf16 too without AMX; AMX's bf16 kernels round by
    batch shape, BENCHMARKS.md).
    """

    def __init__(self, base_layer: nn.Linear, adapters: list[LoraLayer]) -> None:
        super().__init__()
        self.base_layer = base_layer
        self.lora_A = nn.ModuleList(a.lora_A[a.active_adapters[0]] for a in adapters)
        self.lora_B = nn.ModuleList(a.lora_B[a.active_adapters[0]] for a in adapters)
        self.scaling = [float(a.scaling[a.active_adapters[0]]) for a in adapters]
        self.groups: list[list[int]] = [[i] for i in range(len(adapters))]
        """The runs still training, in the order their rows are stacked, in groups of one rank (set by `train_pack`)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        result = self.base_layer(x)
        rows = x.reshape(sum(map(len, self.groups)), -1, x.shape[-1])
        deltas, start = [], 0
        for runs in self.groups:
            part, start = rows[start:start + len(runs)], start + len(runs)
            if len(runs) == 1:
                i = runs[0]
                deltas.append(self.lora_B[i](self.lora_A[i](part)) * self.scaling[i])
                continue
            # the scale goes on A (runs x rank x in numbers), not on the output (runs x rows x out): PEFT's
            # (B A x) * s up to rounding, and exactly it for the default scale 2 (a power of two)
            scale = torch.tensor([self.scaling[i] for i in runs], device=x.device).view(-1, 1, 1)
            a = torch.stack([self.lora_A[i].weight for i in runs]) * scale  # (runs, rank, in)
            b = torch.stack([self.lora_B[i].weight for i in runs])  # (runs, out, rank)
            deltas.append(torch.bmm(torch.bmm(part, a.transpose(1, 2)), b.transpose(1, 2)))
        delta = deltas[0] if len(deltas) == 1 else torch.cat(deltas)
        return result + delta.view(result.shape)


def rank_groups(active: list[int], ranks: list[int]) -> list[list[int]]:
    """`active` (sorted by rank) cut into runs of equal rank."""
    return [list(g) for _, g in itertools.groupby(active, key=lambda i: ranks[i])]


def shared_copy(model: nn.Module) -> nn.Module:
    """A copy of `model`'s modules that shares its parameter and buffer tensors (no memory for the weights)."""
    memo = {id(t): t for t in itertools.chain(model.parameters(), model.buffers())}
    return copy.deepcopy(model, memo)


def _adapted(model: nn.Module) -> dict[str, LoraLayer]:
    """A PEFT LoRA model's adapted layers by their name in the base model."""
    return {name.removeprefix(PEFT_PREFIX): m for name, m in model.named_modules() if isinstance(m, LoraLayer)}


def _packed_model(base: nn.Module, models: list[nn.Module]) -> list[PackedLoraLinear]:
    """Replace, in `base` (a shared copy), every layer the runs adapt with one packed layer; the packed layers."""
    adapted = [_adapted(m) for m in models]
    other = next((n for n, layer in adapted[0].items() if not isinstance(layer, LoraLinear)), None)
    if other is not None:
        raise AuditError(f"layer {other} is not a Linear: a pack adapts Linear layers only; narrow target_modules")
    if any(a.keys() != adapted[0].keys() for a in adapted):
        raise AuditError("the runs of a pack adapt different layers: pack only runs with the same target_modules")
    layers = []
    for name in adapted[0]:
        layer = PackedLoraLinear(base.get_submodule(name), [a[name] for a in adapted])
        base.set_submodule(name, layer)
        layers.append(layer)
    return layers


def _stack(parts: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]],
           pad_id: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The runs' batches, right-padded to the widest, one under the other."""
    width = max(ids.shape[1] for ids, _, _ in parts)
    fills = (pad_id, 0, IGNORE)
    return tuple(torch.cat([nn.functional.pad(p[k], (0, width - p[k].shape[1]), value=fills[k]) for p in parts])
                 for k in range(3))


def train_pack(base: nn.Module, members: Sequence[PackMember], tokenizer: PreTrainedTokenizerBase, budget: BudgetSpec,
               precision: Precision, progress: bool = True) -> list[PackOutcome]:
    """Train every member for `budget.steps` steps in one pack over `base` (left unchanged); one outcome per member.

    A member's seconds are its share of the pack's time (each step's time split over the runs that took it)."""
    if not members:
        raise ValueError("a pack needs at least one run")
    if any(not m.method.packable for m in members):
        raise AuditError(f"runs {', '.join(m.label for m in members if not m.method.packable)} cannot train in a pack")
    accelerator = make_accelerator(precision)
    if accelerator.num_processes > 1:
        raise AuditError("packed training runs in one process: set execution.pack to false under a launcher")
    flags = [(p, p.requires_grad) for p in base.parameters()]
    device = next(base.parameters()).device
    packed = shared_copy(base)
    try:
        models = []
        for m in members:
            torch.manual_seed(m.seed)  # the initialisation `train_run` gives the run alone
            models.append(m.method.prepare(shared_copy(base)))
        layers = _packed_model(packed, models)
        optimizers = [m.method.optimizer(model) for m, model in zip(members, models)]
        schedules = [lr_schedule(opt, budget) for opt in optimizers]
        params = [[p for p in model.parameters() if p.requires_grad] for model in models]
        data = [batches(encode_examples(m.examples, tokenizer), budget.batch_size, m.seed, tokenizer.pad_token_id)
                for m in members]
        outcomes = [PackOutcome(model, TrainResult(steps=0, seconds=0.0, tokens=0)) for model in models]
        packed.to(accelerator.device).train()
        ranks = [m.method.rank for m in members]
        active = sorted(range(len(members)), key=lambda i: ranks[i])  # runs of one rank stacked together
        bar = tqdm(range(1, budget.steps + 1), total=budget.steps, desc=f"pack of {len(members)}",
                   disable=not progress, leave=False, unit="step")
        with precision.weights_cast_once(packed):
            for step in bar:
                start = time.perf_counter()
                parts = [next(data[i]) for i in active]
                ids, mask, labels = (t.to(accelerator.device) for t in _stack(parts, tokenizer.pad_token_id))
                groups = rank_groups(active, ranks)
                for layer in layers:
                    layer.groups = groups
                with precision.training_attention(accelerator.device, ids.shape[1]), \
                        precision.autocast(accelerator.device.type):
                    logits, targets = completion_logits(packed, ids, mask, labels)
                losses = [token_loss(lg, tg) for lg, tg in zip(logits.chunk(len(active)), targets.chunk(len(active)))]
                values = torch.stack([loss.detach() for loss in losses]).tolist()
                going = []
                for i, loss, value, (_, part_mask, _) in zip(active, losses, values, parts):
                    if not math.isfinite(value):
                        outcomes[i].error = TrainingDiverged(step, value)
                        logger.info(f"{members[i].label}: {outcomes[i].error}")
                        continue
                    going.append(i)
                    res = outcomes[i].result
                    res.losses.append(value)
                    res.tokens += int(part_mask.sum())
                    res.steps = step
                if going:
                    sum(losses[active.index(i)] for i in going).backward()
                for i in going:
                    torch.nn.utils.clip_grad_norm_(params[i], budget.max_grad_norm)
                    optimizers[i].step()
                    schedules[i].step()
                for opt in optimizers:
                    opt.zero_grad(set_to_none=True)
                seconds = time.perf_counter() - start
                for i in going:
                    outcomes[i].result.seconds += seconds / len(going)
                active = going
                if not active:
                    break
        for outcome, opt in zip(outcomes, optimizers):
            outcome.result.optimizer_state_bytes = optimizer_state_bytes(opt)
    finally:
        packed.to(device)  # the shared tensors back where they were given
        for p, flag in flags:
            p.requires_grad_(flag)
    for model in models:
        model.eval()
    return outcomes
