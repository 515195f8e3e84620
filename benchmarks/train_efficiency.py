"""Training efficiency: model FLOP/s of full fine-tuning and LoRA steps as a share of the measured matmul rate.

Run on a quiet machine, for BENCHMARKS.md:
    python benchmarks/train_efficiency.py                    # default model, the quick preset's debias data
    python benchmarks/train_efficiency.py --model tiny --steps 3   # a check that the script runs
Model FLOPs count only the useful work: 2 x (the blocks' matmul parameters) per real (non-padding) token forward,
plus 2 x (the output layer's) per position that predicts a completion token (the loss needs logits nowhere else),
and twice that backward for full fine-tuning (gradients for activations and weights) or once for LoRA
(activations only; the adapters' own FLOPs are below 1% and left out). The share is against a 2048^3 matmul in the same run, in
the precision the step used. A torch.profiler pass then splits a step into forward, backward and optimizer.
"""

from __future__ import annotations

import argparse
import copy

import torch
from torch.profiler import ProfilerActivity, profile

from lowrank_audit.config import BudgetSpec, ModelSpec
from lowrank_audit.evaluate import Runner
from lowrank_audit.methods import METHODS
from lowrank_audit.models import FP32, Precision, load_model
from lowrank_audit.sweep import task_vocabulary
from lowrank_audit.tasks import TASKS
from lowrank_audit.train import train
from lowrank_audit.train.loop import IGNORE, batches, encode_examples
from precision import matmul_tflops

RUNS = (("full", {"lr": 5e-5}, 6), ("lora", {"rank": 16, "lr": 1e-3}, 4))  # method, options, FLOPs per param-token


def matmul_parameters(model: torch.nn.Module) -> tuple[int, int]:
    """(parameters in a matmul at every token: the transformer blocks; the output layer's, needed only where a
    position predicts a completion token). The input embedding is a lookup, not a matmul."""
    total = sum(p.numel() for p in model.parameters())
    head = model.get_output_embeddings().weight.numel()
    tied = model.get_output_embeddings().weight is model.get_input_embeddings().weight
    return total - head - (0 if tied else model.get_input_embeddings().weight.numel()), head


def tokens_and_labels(examples, tokenizer, budget: BudgetSpec, seed: int) -> tuple[int, int]:
    """(real tokens, positions that predict a completion token) over the steps `train` takes with this seed."""
    data = batches(encode_examples(examples, tokenizer), budget.batch_size, seed, tokenizer.pad_token_id)
    tokens = labels = 0
    for _ in range(budget.steps):
        _, mask, label = next(data)
        tokens += int(mask.sum())
        labels += int((label[:, 1:] != IGNORE).sum())
    return tokens, labels


def phase_split(model: torch.nn.Module, method, examples, tokenizer, budget: BudgetSpec, precision: Precision) -> dict:
    """Seconds per step in forward, backward and optimizer, from a profiled run of the same loop."""
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        train(model, method, examples, tokenizer, budget, precision, seed=1, progress=False)
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events) / 1e6
    backward = sum(e.cpu_time_total for e in events if e.key.startswith("autograd::engine::evaluate_function")) / 1e6
    optimizer = sum(e.cpu_time_total for e in events if e.key.startswith("Optimizer.step#")) / 1e6
    casts = sum(e.self_cpu_time_total for e in events if e.key in ("aten::copy_", "aten::_to_copy")) / 1e6
    matmuls = sum(e.self_cpu_time_total for e in events if e.key in ("aten::mm", "aten::bmm", "aten::addmm")) / 1e6
    top = sorted(events, key=lambda e: -e.self_cpu_time_total)[:6]
    return {"total": total, "backward-graph": backward, "optimizer": optimizer, "casts": casts, "matmuls": matmuls,
            "top": [(e.key, e.self_cpu_time_total / 1e6) for e in top]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["default", "tiny"], default="default")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    args = parser.parse_args()

    rate = {"fp32": matmul_tflops(torch.float32), "bf16": matmul_tflops(torch.bfloat16)}
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; matmul 2048^3: fp32 {rate['fp32']:.2f}, "
          f"bf16 {rate['bf16']:.2f} TFLOP/s")
    loaded = load_model(ModelSpec(source=args.model), task_vocabulary())
    task = TASKS.get("debias")(TASKS.get("debias").Options(), loaded.tokenizer)
    base = task.observe_base(Runner(loaded.tokenizer, FP32, 32, False), loaded.model)
    task.bind(base)
    examples = task.train_examples(base, 0)
    n_body, n_head = matmul_parameters(loaded.model)
    budget = BudgetSpec(steps=args.steps, batch_size=args.batch_size)
    tokens, labels = tokens_and_labels(examples, loaded.tokenizer, budget, seed=0)
    print(f"{loaded.description}: {n_body:,} block and {n_head:,} output-layer matmul parameters; debias data, "
          f"{len(examples)} examples, batch {args.batch_size}, {args.steps} steps: {tokens} tokens, {labels} labels")
    print(f"{'method':6s} {'precision':9s} {'s/step':>7s} {'tokens/s':>9s} {'TFLOP/s':>8s} {'of matmul':>9s}  profile "
          "(s per profiled run: total / backward graph / optimizer / casts / matmuls)")
    for name, options, flops_per in RUNS:
        cls = METHODS.get(name)
        for precision in args.precisions:
            method = cls(cls.Options(**options))
            model = method.prepare(copy.deepcopy(loaded.model))
            res = train(model, method, examples, loaded.tokenizer, budget, Precision(precision), seed=0, progress=False)
            assert res.tokens == tokens
            achieved = flops_per * (n_body * tokens + n_head * labels) / res.seconds / 1e12
            short = BudgetSpec(steps=3, batch_size=args.batch_size)
            split = phase_split(method.prepare(copy.deepcopy(loaded.model)), method, examples, loaded.tokenizer, short,
                                Precision(precision))
            print(f"{name:6s} {precision:9s} {res.seconds_per_step:7.3f} {res.tokens_per_second:9.0f} {achieved:8.3f} "
                  f"{achieved / rate[precision]:9.1%}  {split['total']:.2f} / {split['backward-graph']:.2f} / "
                  f"{split['optimizer']:.2f} / {split['casts']:.2f} / {split['matmuls']:.2f}")
            print("        top ops: " + ", ".join(f"{k} {v:.2f}s" for k, v in split["top"]))


if __name__ == "__main__":
    main()
