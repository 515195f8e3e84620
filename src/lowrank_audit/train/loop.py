"""The training loop: plain and visible, the same for every method and task.

One step = one batch of (prompt, completion) examples, loss on completion tokens only, AdamW (or the
method's optimizer), gradient clipping, the learning-rate schedule, the method's per-step hook. The budget is a number
of steps.
It runs through `accelerate`: one process on the CPU or a GPU, or several launched processes (`accelerate launch`,
`torchrun`) that each take their rows of every batch (data parallel; see train/launch.py). Given a checkpoint folder,
a run resumes from its newest checkpoint and writes one every `checkpoint_every` steps (train/checkpoint.py).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType
from torch import nn
from tqdm.auto import tqdm
from transformers import PreTrainedTokenizerBase, get_scheduler

from ..config.spec import BudgetSpec
from ..errors import AuditError
from ..methods.base import Method, optimizer_state_bytes
from ..models.precision import Precision
from ..records import Example
from .checkpoint import capture, load_latest, restore, save

IGNORE = -100
SHARDED = (DistributedType.FSDP, DistributedType.DEEPSPEED, DistributedType.MEGATRON_LM)

logger = logging.getLogger(__name__)


class TrainingDiverged(Exception):
    """The loss became NaN or infinite; the run is marked failed with the step number."""

    def __init__(self, step: int, loss: float) -> None:
        super().__init__(f"loss became {loss} at step {step}; lower the learning rate or check the data")
        self.step = step


@dataclass
class TrainResult:
    steps: int
    seconds: float
    tokens: int
    losses: list[float] = field(default_factory=list)
    optimizer_state_bytes: int = 0

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps, 1)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else float("nan")

    @property
    def final_loss(self) -> float:
        """Mean loss over the last tenth of the steps (a single step's loss is too noisy)."""
        tail = self.losses[-max(1, len(self.losses) // 10):]
        return float(np.mean(tail)) if tail else float("nan")


def encode_examples(examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase) -> list[tuple[list[int], list[int]]]:
    """(input_ids, labels) per example; prompt and completion are tokenized apart so the boundary is exact."""
    out = []
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
        out.append((prompt + completion, [IGNORE] * len(prompt) + completion))
    return out


def batches(encoded: Sequence[tuple[list[int], list[int]]], batch_size: int, seed: int,
            pad_id: int) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
    """Endless right-padded batches; the order is reshuffled every epoch from `seed`."""
    rng = np.random.default_rng(seed)
    while True:
        order = rng.permutation(len(encoded))
        for start in range(0, max(len(order) - batch_size, 0) + 1, batch_size):  # drop the ragged tail
            chunk = [encoded[i] for i in order[start : start + batch_size]]
            width = max(len(ids) for ids, _ in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            labels = torch.full((len(chunk), width), IGNORE, dtype=torch.long)
            mask = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, (x, y) in enumerate(chunk):
                ids[i, : len(x)] = torch.tensor(x)
                labels[i, : len(y)] = torch.tensor(y)
                mask[i, : len(x)] = 1
            yield ids, mask, labels


def completion_logits(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The model's fp32 logits at the positions that predict a completion token in some row, and their targets
    (IGNORE where a row has no completion token there).

    Completions are short (one token in `debias`), so computing logits at every position, as `labels=` does, spends
    most of the output layer's work (a fifth of SmolLM2's matmuls) and its softmax on positions without a label.
    `logits_to_keep` is transformers' own argument for this.
    """
    has_label = labels[:, 1:] != IGNORE  # position t predicts token t + 1
    keep = has_label.any(dim=0).nonzero().squeeze(1)
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    return logits.float(), labels[:, keep + 1]


def token_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over the labelled (not IGNORE) positions."""
    return nn.functional.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


def completion_loss(model: nn.Module, ids: torch.Tensor, mask: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The model's causal-LM loss (mean cross-entropy over completion tokens), with the output layer applied only at
    the positions that predict a completion token (the same mean cross-entropy as `labels=`, in fp32)."""
    return token_loss(*completion_logits(model, ids, mask, labels))


def step_loss(accelerator: Accelerator, model: nn.Module, method: Method, ids: torch.Tensor, mask: torch.Tensor,
              labels: torch.Tensor) -> tuple[torch.Tensor, float]:
    """The loss of one batch to back-propagate, and its value (the mean over the batch's completion tokens).

    With several processes, each takes its rows of the batch and weighs its mean by its share of the batch's
    completion tokens, so that the gradients DDP averages over processes are those of the whole batch's mean.
    """
    with accelerator.split_between_processes({"ids": ids, "mask": mask, "labels": labels}) as part:
        if method.loss_from_model:
            loss = model(input_ids=part["ids"], attention_mask=part["mask"], labels=part["labels"]).loss
        else:
            loss = completion_loss(model, part["ids"], part["mask"], part["labels"])
        if accelerator.num_processes == 1:
            return loss, loss.item()
        share = (part["labels"][:, 1:] != IGNORE).sum() / (labels[:, 1:] != IGNORE).sum()
        loss = loss * share * accelerator.num_processes
        return loss, accelerator.reduce(loss.detach(), "mean").item()


def lr_schedule(optimizer: torch.optim.Optimizer, budget: BudgetSpec,
                done: int = 0) -> torch.optim.lr_scheduler.LRScheduler:
    """transformers' `budget.lr_schedule` over `budget.steps` steps, stepped once per optimizer step, positioned after
    `done` steps: a resumed run's restored optimizer holds the rate it had and the schedule carries on from there.

    Not passed through `accelerator.prepare`: its wrapper steps the schedule once per process, and a launched run's
    processes share each batch, so one step of the loop is one step of the schedule."""
    # get_scheduler passes no extra arguments to the constant schedule, which has no position to keep anyway
    extra = {"last_epoch": done - 1} if budget.lr_schedule != "constant" else None
    return get_scheduler(budget.lr_schedule, optimizer, num_warmup_steps=round(budget.warmup_ratio * budget.steps),
                         num_training_steps=budget.steps, scheduler_specific_kwargs=extra)


def make_accelerator(precision: Precision) -> Accelerator:
    """An Accelerator for one run at `precision`; device and plugins come from the environment."""
    # AcceleratorState is a process-wide singleton that refuses a different mixed_precision once set, and a sweep (or
    # a test session) trains many runs in one process: reset it per run, as transformers' Trainer does between
    # hyper-parameter trials. PartialState (processes, device) is kept.
    AcceleratorState._reset_state()
    accelerator = Accelerator(mixed_precision=precision.mixed_precision)
    if accelerator.gradient_accumulation_steps != 1:
        raise AuditError(f"the accelerate config sets gradient_accumulation_steps {accelerator.gradient_accumulation_steps}, "
                         "but this loop steps the optimizer every batch (budget.batch_size is the batch). Set it to 1 "
                         "and raise budget.batch_size instead.")
    if accelerator.num_processes > 1 and accelerator.distributed_type in SHARDED:
        # Saving a sharded model needs every process, but in a launched sweep only the main process saves and evaluates.
        raise AuditError(f"training a sweep's runs with {accelerator.distributed_type.value} over several processes is not "
                         "supported yet: launch plain data parallelism (accelerate launch --multi_gpu, or "
                         "ACCELERATE_USE_CPU=1 torchrun on CPUs).")
    return accelerator


def train(model: nn.Module, method: Method, examples: Sequence[Example], tokenizer: PreTrainedTokenizerBase,
          budget: BudgetSpec, precision: Precision, seed: int, progress: bool = True, desc: str = "train",
          checkpoint_dir: Path | None = None, checkpoint_every: int = 0) -> TrainResult:
    """Train `model` (already prepared by `method`) for `budget.steps` steps; raises TrainingDiverged.

    With `checkpoint_dir`, resume from its newest usable checkpoint and, every `checkpoint_every` steps (0: never),
    write one there; the final weights are the same as an uninterrupted run's.
    """
    if not examples:
        raise ValueError("no training examples")
    if checkpoint_every < 0 or (checkpoint_every and checkpoint_dir is None):
        raise ValueError(f"checkpoint_every {checkpoint_every}: use 0 (never), or a number of steps with a checkpoint_dir")
    torch.manual_seed(seed)
    accelerator = make_accelerator(precision)
    if budget.batch_size < accelerator.num_processes:
        raise AuditError(f"budget.batch_size {budget.batch_size} is smaller than the {accelerator.num_processes} launched "
                         "processes, which each train on a share of every batch: raise it or launch fewer processes.")
    optimizer = method.optimizer(model)
    data = batches(encode_examples(examples, tokenizer), budget.batch_size, seed, tokenizer.pad_token_id)
    model.train()
    result = TrainResult(steps=0, seconds=0.0, tokens=0)
    start = time.perf_counter()
    method.start(model, data, budget.steps)  # on the model as given, before accelerate wraps its forward in autocast
    resume = load_latest(checkpoint_dir, model, budget.steps) if checkpoint_dir is not None else None
    if accelerator.distributed_type in SHARDED and (checkpoint_every or resume is not None):
        raise AuditError(f"checkpoints hold whole parameters and optimizer state, which {accelerator.distributed_type.value} "
                         f"shards: set execution.checkpoint_every to 0 (and delete {checkpoint_dir}).")
    device = next(model.parameters()).device
    prepared, optimizer = accelerator.prepare(model, optimizer)
    try:
        earlier = 0.0  # seconds trained before the checkpoint this run resumes from
        if resume is not None:
            restore(resume, model, optimizer, method)
            for _ in range(resume.step):  # the data order is rebuilt from the seed
                next(data)
            result.steps, result.tokens, result.losses, earlier = resume.step, resume.tokens, list(resume.losses), resume.seconds
            logger.info(f"resuming {desc} from step {resume.step}")
        schedule = lr_schedule(optimizer, budget, result.steps)
        params = [p for p in prepared.parameters() if p.requires_grad]
        bar = tqdm(range(result.steps + 1, budget.steps + 1), initial=result.steps, total=budget.steps, desc=desc,
                   disable=not progress, leave=False, unit="step")
        paused = 0.0  # seconds spent writing checkpoints: not training time
        with precision.weights_cast_once(model):  # after start, prepare and restore: nothing changes these weights now
            for step in bar:
                ids, mask, labels = (t.to(accelerator.device) for t in next(data))
                with precision.training_attention(accelerator.device, ids.shape[1]):
                    loss, value = step_loss(accelerator, prepared, method, ids, mask, labels)
                if not math.isfinite(value):
                    raise TrainingDiverged(step, value)
                accelerator.backward(loss)
                accelerator.clip_grad_norm_(params, budget.max_grad_norm)
                optimizer.step()
                schedule.step()
                method.after_step(model, step)
                optimizer.zero_grad(set_to_none=True)
                result.losses.append(value)
                result.tokens += int(mask.sum())
                result.steps = step
                bar.set_postfix(loss=f"{value:.3f}")
                if checkpoint_every and step % checkpoint_every == 0 and step < budget.steps:
                    pause = time.perf_counter()
                    if accelerator.is_main_process:
                        seconds = earlier + pause - start - paused
                        save(checkpoint_dir, capture(model, optimizer, method, step, seconds, result.tokens, result.losses))
                    accelerator.wait_for_everyone()
                    paused += time.perf_counter() - pause
        result.seconds = earlier + time.perf_counter() - start - paused
        result.optimizer_state_bytes = optimizer_state_bytes(optimizer)
    finally:
        accelerator.unwrap_model(prepared, keep_fp32_wrapper=False)  # model.forward without accelerate's autocast
        accelerator.free_memory()
        model.to(device)  # back where it was given (on a GPU machine: the CPU, where evaluation runs)
    model.eval()
    return result
