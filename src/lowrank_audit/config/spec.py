"""The ExperimentSpec: what to fine-tune, on which tasks, with which methods, seeds and budget."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, NonNegativeFloat, NonNegativeInt, PositiveFloat, PositiveInt, model_validator


class Strict(BaseModel):
    """Unknown keys are errors (with their path), never silently ignored."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)  # .inf or .nan in a config is a typo, never a setting


class TinyModelSpec(Strict):
    """A small randomly initialised Llama built in-process (tests, smoke runs); word-level tokenizer."""

    hidden_size: PositiveInt = 64
    intermediate_size: PositiveInt = 128
    num_layers: PositiveInt = 2
    num_heads: PositiveInt = 4
    num_kv_heads: PositiveInt = 2
    seed: int = 0


class ModelSpec(Strict):
    """Where the base model comes from: the embedded default, a HF hub id / local path, or tiny."""

    source: Literal["default", "hf", "tiny"] = "default"
    path: str | None = Field(None, description="HF hub id or local folder (source: hf)")
    revision: str | None = None
    tiny: TinyModelSpec = TinyModelSpec()

    @model_validator(mode="after")
    def _path_for_hf(self) -> "ModelSpec":
        if self.source == "hf" and not self.path:
            raise ValueError("source 'hf' needs 'path': a hub id like 'HuggingFaceTB/SmolLM2-135M' or a local folder")
        if self.source != "hf" and self.path:
            raise ValueError(f"'path' is only used with source 'hf' (source is {self.source!r})")
        return self


class TaskSpec(Strict):
    name: str
    options: dict[str, Any] = {}
    enabled: bool = True
    """false: validated but only run when selected with --task (an opt-in entry of a preset)."""


class MethodSpec(Strict):
    """A method with fixed options, plus `sweep`: option -> list of values, one run per combination, and `tune`: option
    -> grid, every point trained at the first seed and the one with the best validation objective kept for the others."""

    name: str
    options: dict[str, Any] = {}
    sweep: dict[str, list[Any]] = {}
    tune: dict[str, list[Any]] = {}

    @model_validator(mode="after")
    def _tune_apart(self) -> "MethodSpec":
        both = sorted((set(self.tune) & set(self.sweep)) | (set(self.tune) & set(self.options)))
        if both:
            raise ValueError(f"option(s) {', '.join(both)} are both tuned and set or swept; give each in one place")
        empty = sorted(k for k, v in self.tune.items() if not v)
        if empty:
            raise ValueError(f"tune.{empty[0]}: give at least one value")
        return self


class BudgetSpec(Strict):
    """Training budget, the same for every method so that they are compared at equal cost in steps."""

    steps: PositiveInt
    batch_size: PositiveInt = 16
    eval_batch_size: PositiveInt = 32
    max_grad_norm: PositiveFloat = 1.0
    lr_schedule: Literal["linear", "cosine", "constant"] = Field(
        "linear", description="the learning rate over the steps (transformers' schedules): linear decay to 0, the "
        "default of transformers' Trainer, averages the last steps' noise away; constant keeps the last batches' noise "
        "in the final weights (BENCHMARKS.md)")
    warmup_ratio: float = Field(0.0, ge=0.0, lt=1.0, description="share of the steps that warm the rate up from 0")
    params: PositiveInt | None = Field(
        None, description="trainable-parameter budget: each method's size option (rank, ...) that the config does not "
        "set is chosen so that its trainable parameters come closest to this number")


class AnalysisSpec(Strict):
    """Options of the task-independent weight analysis (intruder dimensions); defaults as in Shuttleworth et al.'s code
    and PEFT's `reduce_intruder_dimension`. Values other than the defaults are part of a trained run's identity."""

    intruder_top_k: PositiveInt = Field(10, description="top singular vectors of W_0 + dW searched for intruders")
    intruder_epsilon: float = Field(0.5, gt=0, le=1, description="an intruder's max |cos| with W_0's singular vectors is below this")


class ExecutionSpec(Strict):
    """How the runs are executed. Never part of a run's identity: results do not depend on it."""

    executor: Literal["local", "ray"] = Field(
        "local", description="local: one run at a time in this process; ray: one Ray task per run")
    ray_address: str | None = Field(None, description="ray.init(address=...); none starts a local Ray instance")
    cpus_per_run: PositiveFloat = Field(1, description="CPUs each Ray task reserves")
    gpus_per_run: NonNegativeFloat = Field(0, description="GPUs each Ray task reserves")
    checkpoint_every: NonNegativeInt = Field(
        0, description="save a training checkpoint every N steps (0: never); a killed run resumes from the last one")
    pack: bool = Field(
        False, description="train a group's pending plain-LoRA runs (no dropout, same target_modules) as packs: one "
        "batched pass over the shared base per step, each run's own adapter and optimizer (local executor, one process, "
        "checkpoint_every 0). Off by default: on a 2-core CPU it measured no faster than one run at a time")
    pack_size: PositiveInt = Field(8, description="most runs in one pack (activation memory grows with it)")
    keep_full_weights: bool = Field(
        False, description="keep full-rank runs' model.safetensors once the sweep has finished (adapters are always kept)")
    keep_cache: bool = Field(False, description="keep the cached base and reference observations once the sweep has finished")

    @model_validator(mode="after")
    def _address_for_ray(self) -> "ExecutionSpec":
        if self.ray_address and self.executor != "ray":
            raise ValueError(f"'ray_address' is only used with executor 'ray' (executor is {self.executor!r}); "
                             "set 'executor: ray' or remove the address")
        return self


class ExperimentSpec(Strict):
    name: str
    model: ModelSpec = ModelSpec()
    tasks: list[TaskSpec] = Field(min_length=1)
    methods: list[MethodSpec] = Field(min_length=1)
    seeds: list[int] = Field([0], min_length=1)
    budget: BudgetSpec
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """Training precision (auto: bf16 autocast where the hardware runs it fast, else fp32)."""
    eval_precision: Literal["fp32", "bf16", "auto"] = "fp32"
    """Precision of every evaluation forward pass. fp32 by default: a bf16 forward moves the base model's category masses
    by up to 0.009, the size of the group gaps being compared (BENCHMARKS.md)."""
    execution: ExecutionSpec = ExecutionSpec()
    analysis: AnalysisSpec = AnalysisSpec()

    @model_validator(mode="after")
    def _a_task_runs(self) -> "ExperimentSpec":
        if not any(t.enabled for t in self.tasks):
            raise ValueError("every task has 'enabled: false'; set 'enabled: true' on at least one")
        return self
