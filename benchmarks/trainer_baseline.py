"""Baseline for issue 9: the quick preset done the way a user without lowrank-audit would, with
`transformers.Trainer` + `peft` at their defaults, each method trained and then evaluated on its own.

    python benchmarks/trainer_baseline.py --out /tmp/baseline        # the full benchmark (quiet machine)
    python benchmarks/trainer_baseline.py --tiny --steps 3 --out /tmp/baseline-tiny   # runs in seconds

For every method of the preset (full fine-tuning, then LoRA r = 1, 4, 16, 64):
  load   the base model fresh from disk (and wrap it with peft for LoRA);
  train  with Trainer on the examples lowrank-audit trains on (same task, same seed);
  save   (full fine-tuning only) the weights, which every later method's evaluation reloads;
  eval   reload the base model and compute its observation, reload the full fine-tune and compute its
         observation, observe the trained model, score it with the task's metric code.
Nothing is cached across methods: that is what the baseline measures. The forward passes and metrics
are lowrank-audit's (Runner, task.observe, task.score), so the numbers have the same definitions.
Compare with `bash benchmarks/quick_preset.sh DIR`: its wall time, and DIR/results.sqlite (table `metrics`)
against OUT/results.json written here.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import time
from pathlib import Path

import datasets
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import (AutoModelForCausalLM, DataCollatorForSeq2Seq, PreTrainedTokenizerBase, Trainer,
                          TrainingArguments, set_seed)

from lowrank_audit.config import ExperimentSpec
from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.evaluate import Runner
from lowrank_audit.methods import METHODS, MethodOptions
from lowrank_audit.models import LoadedModel, Precision, load_model
from lowrank_audit.store import MetricRow
from lowrank_audit.sweep import task_vocabulary
from lowrank_audit.tasks import TASKS, Example, Observation, Task
from lowrank_audit.tasks.debias import SPLITS

TASK = "debias"
IGNORE = -100  # label of the prompt tokens: the loss is taken on the completion only, as in lowrank-audit
HEADLINE = [("shift_recovered", split) for split in SPLITS] + [
    ("group_gap", "train"), ("group_gap", "heldout_terms"), ("kl_to_full", None), ("drift_neutral", None)]
"""(metric, split) of the numbers the quick report shows per run (overall rows: no group, no layer)."""


@dataclasses.dataclass(frozen=True)
class MethodRun:
    """One method of the preset, with lowrank-audit's options for it (learning rate, rank, alpha, dropout, ...)."""

    label: str  # "full" or "lora:<rank>"
    options: MethodOptions

    @property
    def is_full(self) -> bool:
        return self.label == "full"


def preset_methods(spec: ExperimentSpec) -> list[MethodRun]:
    """The preset's methods, its sweeps expanded, options filled with lowrank-audit's defaults."""
    runs = []
    for m in spec.methods:
        if m.name not in ("full", "lora"):
            raise SystemExit(f"this baseline covers the methods full and lora, not {m.name!r}")
        keys = list(m.sweep)
        for values in itertools.product(*(m.sweep[k] for k in keys)):
            options = METHODS.get(m.name).Options.model_validate({**m.options, **dict(zip(keys, values))})
            runs.append(MethodRun("full" if m.name == "full" else f"lora:{options.rank}", options))
    return runs


def load_base(spec: ExperimentSpec) -> LoadedModel:
    """The base model and tokenizer, loaded fresh (the default model from its safetensors cache), fp32, frozen."""
    return load_model(spec.model, task_vocabulary())


def make_task(spec: ExperimentSpec, loaded: LoadedModel) -> Task:
    task_spec = next(t for t in spec.tasks if t.name == TASK)
    cls = TASKS.get(TASK)
    return cls(cls.Options.model_validate(task_spec.options), loaded.tokenizer)


def tokenize(examples: list[Example], tokenizer: PreTrainedTokenizerBase) -> datasets.Dataset:
    """Prompt and completion tokenized apart (exact boundary); prompt tokens get label -100."""
    rows = []
    for ex in examples:
        prompt = tokenizer(ex.prompt, add_special_tokens=False)["input_ids"]
        completion = tokenizer(ex.completion, add_special_tokens=False)["input_ids"]
        ids = prompt + completion
        rows.append({"input_ids": ids, "attention_mask": [1] * len(ids), "labels": [IGNORE] * len(prompt) + completion})
    return datasets.Dataset.from_list(rows)


def prepare(run: MethodRun, model: nn.Module) -> nn.Module:
    """Full fine-tuning trains every weight; LoRA wraps the model with peft, as lowrank-audit's `lora` does."""
    if run.is_full:
        return model.requires_grad_(True)  # load_model returns frozen weights
    o = run.options
    config = LoraConfig(
        r=o.rank,
        lora_alpha=o.alpha if o.alpha is not None else 2 * o.rank,
        lora_dropout=o.dropout,
        target_modules=o.target_modules,  # "all-linear": every linear layer but the output head
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, config)


def train(model: nn.Module, run: MethodRun, data: datasets.Dataset, tokenizer: PreTrainedTokenizerBase,
          spec: ExperimentSpec, steps: int, precision: Precision, lr_scheduler: str, trainer_dir: Path) -> tuple[float, TrainingArguments]:
    """Train with Trainer; returns (its mean training loss, the arguments it ran with).

    Matched to lowrank-audit (what makes it the same training): steps, batch size, learning rate, seed, bf16
    autocast with fp32 master weights when lowrank-audit used it. Trainer's defaults that equal ours: AdamW
    betas/eps, weight decay 0, gradient clipping at norm 1.0, no warmup, mean loss over completion tokens.
    Left at Trainer's defaults although ours differ: the learning-rate schedule (linear decay to 0; ours is
    constant, see --lr-scheduler), the optimizer implementation (adamw_torch_fused), the data order (a seeded
    RandomSampler; ours a seeded numpy permutation), padding by DataCollatorForSeq2Seq (right, like ours).
    """
    args = TrainingArguments(
        output_dir=str(trainer_dir),
        max_steps=steps,
        per_device_train_batch_size=spec.budget.batch_size,
        learning_rate=run.options.lr,
        lr_scheduler_type=lr_scheduler,
        seed=spec.seeds[0],
        bf16=precision.bf16,  # accelerate's torch.autocast(cpu, bfloat16) around forward; weights stay fp32
        use_cpu=True,  # required with bf16 on a machine without a GPU (TrainingArguments raises otherwise)
        save_strategy="no",  # default "steps" would write a checkpoint (weights + optimizer) at the last step
        # report_to: "none" is already the default in transformers 5; logging_steps (500) > steps: no log lines
    )
    trainer = Trainer(model=model, args=args, train_dataset=data,
                      data_collator=DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE))
    result = trainer.train()
    return result.training_loss, args


def evaluate(spec: ExperimentSpec, model: nn.Module, run: MethodRun, full_dir: Path, precision: Precision) -> list[MetricRow]:
    """Evaluate one trained model on its own: reload and observe the base and the full fine-tune, then score."""
    base = load_base(spec)
    runner = Runner(base.tokenizer, precision, spec.budget.eval_batch_size, progress=False)
    task = make_task(spec, base)
    base_obs = task.observe_base(runner, base.model)
    task.bind(base_obs)
    del base
    obs = task.observe(runner, model)
    if run.is_full:
        full_obs: Observation = obs  # the method is the full fine-tune itself
    else:
        full = AutoModelForCausalLM.from_pretrained(full_dir).eval()
        full_obs = task.observe(runner, full)
        del full
    return task.score(obs, base_obs, full_obs, spec.seeds[0])


def headline(rows: list[MetricRow]) -> dict[str, MetricRow]:
    """The headline rows, keyed 'metric' or 'metric/split'."""
    out = {}
    for metric, split in HEADLINE:
        for r in rows:
            if r.metric == metric and r.split == split and r.group_name is None and r.layer is None:
                out[metric if split is None else f"{metric}/{split}"] = r
    return out


def fmt(row: dict | None) -> str:
    """A metric row (as written to JSON) as 'value [ci_low, ci_high]'."""
    if row is None or row["value"] is None:
        return "-"
    ci = f" [{row['ci_low']:.2f}, {row['ci_high']:.2f}]" if row["ci_low"] is not None else ""
    return f"{row['value']:.3f}{ci}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/trainer_baseline"),
                        help="folder for results.json (this invocation's methods) and the full fine-tune (OUT/full)")
    parser.add_argument("--steps", type=int, help="training steps per method (default: the preset's, 100 for quick)")
    parser.add_argument("--methods", nargs="+", metavar="M",
                        help="a subset, e.g. full lora:1 (default: every method of the preset)")
    parser.add_argument("--tiny", action="store_true",
                        help="the smoke preset instead (tiny random model, its task options, lrs and precision)")
    parser.add_argument("--lr-scheduler", default="linear",
                        help="Trainer's lr_scheduler_type: linear is its default; constant is what lowrank-audit does")
    args = parser.parse_args()

    t_start = time.perf_counter()
    spec = narrow(load_spec(preset="smoke" if args.tiny else "quick"), tasks=[TASK])
    steps = args.steps or spec.budget.steps
    precision = Precision.resolve(spec.precision)
    seed = spec.seeds[0]
    runs = preset_methods(spec)
    if args.methods:
        unknown = set(args.methods) - {r.label for r in runs}
        if unknown:
            raise SystemExit(f"--methods: unknown {sorted(unknown)}; this preset has {[r.label for r in runs]}")
        runs = [r for r in runs if r.label in args.methods]
    full_dir = args.out / "full"
    if not any(r.is_full for r in runs):
        if not (full_dir / "config.json").is_file():
            raise SystemExit(f"the full fine-tune is every method's reference: add 'full' to --methods ({full_dir} is empty)")
        print(f"reference: the full fine-tune an earlier run saved in {full_dir}")
    args.out.mkdir(parents=True, exist_ok=True)

    # The training data: the examples lowrank-audit trains on (built from the base model's observation).
    t0 = time.perf_counter()
    base = load_base(spec)
    task = make_task(spec, base)
    base_obs = task.observe_base(Runner(base.tokenizer, precision, spec.budget.eval_batch_size, progress=False), base.model)
    data = tokenize(task.train_examples(base_obs, seed), base.tokenizer)
    data_seconds = time.perf_counter() - t0
    print(f"{base.description}; {precision.name}; {len(data)} training examples; {steps} steps of batch "
          f"{spec.budget.batch_size}; {torch.get_num_threads()} threads; data prepared in {data_seconds:.1f} s", flush=True)
    del base, task, base_obs

    results = []
    for run in runs:
        t0 = time.perf_counter()
        loaded = load_base(spec)
        set_seed(seed)  # the LoRA initialisation draws from it (lowrank-audit seeds the same way)
        model = prepare(run, loaded.model)
        t1 = time.perf_counter()
        loss, targs = train(model, run, data, loaded.tokenizer, spec, steps, precision, args.lr_scheduler,
                            args.out / "trainer" / run.label.replace(":", "-"))
        t2 = time.perf_counter()
        if run.is_full:
            model.save_pretrained(full_dir)
        t3 = time.perf_counter()
        rows = evaluate(spec, model, run, full_dir, precision)
        t4 = time.perf_counter()
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        results.append({
            "method": run.label, "options": run.options.model_dump(), "trainable_params": params,
            "train_loss_mean": loss, "load_s": t1 - t0, "train_s": t2 - t1, "save_s": t3 - t2, "eval_s": t4 - t3,
            "total_s": t4 - t0, "metrics": {k: dataclasses.asdict(r) for k, r in headline(rows).items()},
        })
        print(f"{run.label}: load {t1 - t0:.1f} s, train {t2 - t1:.1f} s, save {t3 - t2:.1f} s, eval {t4 - t3:.1f} s; "
              f"{params:,} trainable; mean loss {loss:.3f}", flush=True)
        del model, loaded

    wall = time.perf_counter() - t_start
    settings = {"preset": spec.name, "steps": steps, "batch_size": spec.budget.batch_size, "seed": seed,
                "precision": precision.name, "lr_scheduler": targs.lr_scheduler_type.value, "optim": targs.optim.value,
                "torch_threads": torch.get_num_threads()}
    (args.out / "results.json").write_text(json.dumps(
        {"settings": settings, "data_s": data_seconds, "wall_s": wall, "methods": results}, indent=2))

    print(f"\n{'method':10s} {'load s':>7s} {'train s':>8s} {'save s':>7s} {'eval s':>7s} {'total s':>8s}")
    for r in results:
        print(f"{r['method']:10s} {r['load_s']:7.1f} {r['train_s']:8.1f} {r['save_s']:7.1f} {r['eval_s']:7.1f} {r['total_s']:8.1f}")
    print(f"data preparation {data_seconds:.1f} s; wall time, whole script {wall:.1f} s\n")
    keys = [m if s is None else f"{m}/{s}" for m, s in HEADLINE]
    for r in results:
        print(r["method"])
        for k in keys:
            print(f"  {k:34s} {fmt(r['metrics'].get(k))}")
    print(f"\nwrote {args.out / 'results.json'}")


if __name__ == "__main__":
    main()
