"""The records every layer passes along: an observation, a fine-tuning example, a metric row, a sample row.

They sit on the ground floor (they import nothing of the project) so that tasks, metrics, the trainer and the store
share them without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:  # the store and the report import these records without torch
    import torch

Observation = dict[str, "torch.Tensor"]
"""What a task observed of one model: named tensors (log-probabilities, masses, scores), the input of its scoring."""


@dataclass(frozen=True)
class Example:
    """One fine-tuning example: the loss is taken on the completion's tokens only."""

    prompt: str
    completion: str
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)
    """Where the example came from (e.g. its toxicity score and source); saved with the data, not trained on."""


@dataclass(frozen=True)
class MetricRow:
    """One measured number; NULL group/split/layer mean 'over everything'."""

    metric: str
    value: float | None
    group_name: str | None = None
    split: str | None = None
    layer: int | None = None
    ci_low: float | None = None
    ci_high: float | None = None


@dataclass(frozen=True)
class SampleRow:
    """One generated (or fine-tuning) text with its score: kind 'eval' = sampled at evaluation, 'train' = data."""

    prompt: str
    completion: str
    score: float | None = None
    group_name: str | None = None
    split: str | None = None
    kind: str = "eval"
    note: str | None = None


@dataclass(frozen=True)
class Candidate:
    """One grid point of a tuning family: its run, the tuned values, and its validation score (None: the run failed
    or its score is undefined, so it cannot be chosen); `diverged` says why a point with a score cannot be chosen
    either (its task's divergence rule, e.g. exploding drift), '' when it can."""

    run_id: str
    point: Mapping[str, Any]
    score: float | None
    status: str
    diverged: str = ""


@dataclass(frozen=True)
class Selection:
    """What tuning chose for one family (a method's configuration at one task, all but the tuned options): the grid
    point with the lowest validation `metric`, among every candidate."""

    family: str
    task: str
    method: str
    rank: int | None
    metric: str
    candidates: tuple[Candidate, ...]
    chosen: Candidate | None
    """None: no grid point finished with a defined score (every one diverged)."""
