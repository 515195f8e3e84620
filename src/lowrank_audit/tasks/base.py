"""The Task interface: a task builds its data, says what to observe, and scores observations.

A task never trains and never owns a model loop: the shared trainer fits its train examples and the
shared Runner executes its forward passes. Scoring is a pure function of observations.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Callable, Sequence

import numpy as np
import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from ..evaluate.runner import Runner
from ..metrics import bootstrap_ci, sequence_entropy, sequence_kl
from ..records import Example, MetricRow, Observation, SampleRow
from .card import TaskCard, TaskOptions

VALIDATION = "validation"
"""The split tuning selects on: training rows held out of training and of every reported split."""


def sequence_kl_row(metric: str, logp_ref: torch.Tensor, logp: torch.Tensor, mask: torch.Tensor, n_resamples: int,
                    seed: int) -> MetricRow:
    """`metric`: the mean over sequences of `sequence_kl` (each sequence's mean per-token KL(ref || model)), with a
    bootstrap interval over sequences."""
    per_seq = sequence_kl(logp_ref, logp, mask)
    lo, hi = bootstrap_ci(np.mean, per_seq, n_resamples=n_resamples, seed=seed)
    return MetricRow(metric, float(per_seq.mean()), ci_low=lo, ci_high=hi)


def observe_validation(runner: Runner, model: nn.Module, examples: Sequence[Example]) -> Observation:
    """The model's teacher-forced log-likelihood of each validation example's completion (`validation_loss_rows`)."""
    total, count = runner.completion_logliks(model, [(e.prompt, e.completion) for e in examples], desc="eval validation")
    return {"validation/loglik": total, "validation/tokens": count}


def validation_loss_rows(obs: Observation) -> list[MetricRow]:
    """`validation_loss`: the training loop's loss on every validation example as one batch, the mean cross-entropy
    over their completion tokens (p over the whole vocabulary); none when `obs` has no validation examples."""
    if "validation/loglik" not in obs:
        return []
    tokens = int(obs["validation/tokens"].sum())
    value = -float(obs["validation/loglik"].sum()) / tokens if tokens else None
    return [MetricRow("validation_loss", value, split=VALIDATION)]


def words_of(texts: list[str]) -> list[str]:
    """The words and punctuation a word-level tokenizer needs to cover `texts` (for tiny models)."""
    return [w for t in texts for w in re.findall(r"\w+|[^\w\s]+", t)]


class Task(TaskCard, ABC):
    """A task's implementation: its card (name, options, metric catalogue, ...) and its data, observations and
    scoring."""

    def __init__(self, options: TaskOptions, tokenizer: PreTrainedTokenizerBase) -> None:
        self.options = options
        self.tokenizer = tokenizer

    @classmethod
    @abstractmethod
    def vocabulary(cls) -> list[str]:
        """Every word the task's texts use (a tiny model's tokenizer is built to cover them)."""

    @abstractmethod
    def fingerprint(self) -> str:
        """A hash of the evaluation data, part of every cached observation's key."""

    @abstractmethod
    def observe(self, runner: Runner, model: nn.Module) -> Observation:
        """Run the model on the task's evaluation data; the result is what `score` needs."""

    @abstractmethod
    def train_examples(self, base: Observation, seed: int) -> list[Example]:
        """The fine-tuning data (it may depend on the base model, e.g. a target built from its outputs)."""

    @abstractmethod
    def score(self, obs: Observation, base: Observation, full: Observation | None, seed: int) -> list[MetricRow]:
        """Metrics of one model from its observation and the references (base; full fine-tune if any)."""

    def observe_base(self, runner: Runner, model: nn.Module) -> Observation:
        """The base model's observation (cached); a task may add what only the base provides (e.g. a sample pool)."""
        return self.observe(runner, model)

    def bind(self, base: Observation) -> None:
        """Receive the base observation before any other model is observed (evaluation data built from it)."""

    def data_rows(self, base: Observation, seed: int) -> list[MetricRow]:
        """Properties of the task's data at `seed`, stored with the base run (e.g. how much of the shift the training
        data themselves describe); none by default."""
        return []

    def divergence(self, base: Observation, value: Callable[[str], float | None]) -> str:
        """Why a finished run whose stored summary rows `value` returns has diverged, or '' (tuning never chooses such
        a grid point). By default: its drift on neutral text is above the base model's own mean per-token entropy
        there, i.e. its cross-entropy against the base's next tokens is over twice the base's uncertainty about them,
        farther than any fine-tune that kept the model's language; a task without neutral text has no such rule."""
        drift = value("drift_neutral")
        if drift is None or "neutral/logp" not in base:
            return ""
        limit = float(sequence_entropy(base["neutral/logp"], base["neutral/mask"]).mean())
        return f"drift on neutral text {drift:.3g} > the base model's entropy there {limit:.3g} nats" if drift > limit else ""

    def samples(self, obs: Observation) -> list[SampleRow]:
        """Texts stored with the run (e.g. generated completions and their scores); none by default."""
        return []
