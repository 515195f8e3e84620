"""Cost of every registered method on one model: seconds per step, trainable parameters, peak memory.

Run on a quiet machine, for BENCHMARKS.md:
    python benchmarks/methods_cost.py                       # default model (SmolLM2-135M), paper budget
    python benchmarks/methods_cost.py --model tiny --steps 3   # a check that the script runs, in seconds
Each method is trained with the toolkit's own loop (its per-run hooks included) on a fixed set of examples;
sizes (rank, n_frequency, ...) are chosen to match --params as a sweep's `budget.params` does.
"""

from __future__ import annotations

import argparse
import copy
import gc

import psutil
import torch

from lowrank_audit.config import BudgetSpec, ModelSpec
from lowrank_audit.errors import AuditError
from lowrank_audit.methods import METHODS, trainable_parameters
from lowrank_audit.methods.budget import match_budget
from lowrank_audit.models import Precision, load_model
from lowrank_audit.sweep import task_vocabulary
from lowrank_audit.tasks import Example
from lowrank_audit.train import PeakRSS, train

EXAMPLES = [Example(f"The {who} worked as a", f" {job}")
            for who in ("woman", "man", "person", "girl") for job in ("doctor", "nurse", "teacher", "lawyer")]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["default", "tiny"], default="default")
    parser.add_argument("--steps", type=int, default=20, help="training steps per method")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--params", type=int, default=610560, help="trainable-parameter budget (paper preset)")
    parser.add_argument("--precision", choices=["auto", "fp32", "bf16"], default="auto")
    parser.add_argument("--methods", nargs="*", help="methods to run (default: every registered one)")
    args = parser.parse_args()

    loaded = load_model(ModelSpec(source=args.model), task_vocabulary())
    precision = Precision.resolve(args.precision)
    budget = BudgetSpec(steps=args.steps, batch_size=args.batch_size)
    print(f"{loaded.description}, {precision.name}, {args.steps} steps of batch {args.batch_size}, torch threads "
          f"{torch.get_num_threads()}, budget {args.params:,} parameters")
    print(f"{'method':10s} {'size':>18s} {'trainable':>12s} {'s/step':>8s} {'peak MB':>9s} {'+MB':>8s} {'optim MB':>9s}")
    for name in args.methods or [n for n in METHODS.names() if METHODS.get(n).trains]:
        cls = METHODS.get(name)
        options = cls.Options()
        if cls.size_option is not None:
            options, _ = match_budget(cls, options, loaded.model, args.params)
        method = cls(options)
        try:
            method.check(loaded.model)
        except AuditError as e:
            print(f"{name:10s} skipped: {e}")
            continue
        size = f"{cls.size_option}={getattr(options, cls.size_option)}" if cls.size_option else (
            f"rank={method.rank}" if method.rank is not None else "-")
        gc.collect()
        before = psutil.Process().memory_info().rss / 2**20
        torch.manual_seed(0)
        model = method.prepare(copy.deepcopy(loaded.model))
        with PeakRSS() as mem:
            res = train(model, method, EXAMPLES, loaded.tokenizer, budget, precision, seed=0, progress=False)
        print(f"{name:10s} {size:>18s} {trainable_parameters(model):>12,d} {res.seconds_per_step:>8.3f} {mem.peak_mb:>9.0f} "
              f"{mem.peak_mb - before:>8.0f} {res.optimizer_state_bytes / 2**20:>9.1f}", flush=True)
        del model, method
    print("s/step: training seconds / steps (a method's start hook included, e.g. LoRA-SB's gradient init); "
          "peak MB: process RSS while training (base model included); +MB: above the RSS before the method")


if __name__ == "__main__":
    main()
