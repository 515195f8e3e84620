"""Packed training against one run at a time: the quick preset's LoRA family on the debias data, back to back.

Trains each rank alone with the one training loop (`train`, as a sweep's run does), then all of them as one pack
(`train_pack`), in one process, and prints the wall times, their ratio and how far each packed run's adapter weights
are from its lone twin's (relative Frobenius distance, worst layer). Run it alone on the machine:
    flock /tmp/heavy.lock python benchmarks/packed_training.py                 # default model, quick preset's settings
    python benchmarks/packed_training.py --model tiny --steps 3               # a check that the script runs
"""

from __future__ import annotations

import argparse
import copy
import time

import torch
from peft import get_peft_model_state_dict

from lowrank_audit.config import BudgetSpec, ModelSpec
from lowrank_audit.evaluate import Runner
from lowrank_audit.methods import METHODS
from lowrank_audit.models import FP32, Precision, load_model
from lowrank_audit.sweep import task_vocabulary
from lowrank_audit.tasks import TASKS
from lowrank_audit.train import train
from lowrank_audit.train.packed import PackMember, train_pack


def worst_distance(run: dict, twin: dict) -> float:
    """The largest relative Frobenius distance, over layers, of a run's adapter weights from its twin's."""
    return max(((run[k] - w).norm() / w.norm()).item() for k, w in twin.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["default", "tiny"], default="default")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--ranks", type=int, nargs="+", default=[1, 4, 16, 64])
    parser.add_argument("--lrs", type=float, nargs="+", default=[1e-3],
                        help="learning rates (default: the quick preset's); several make a tuning grid, and the grid is "
                        "also trained as one pack per rank (no zero-padding) to compare with one padded pack")
    parser.add_argument("--precision", default="auto", help="auto (the quick preset's), fp32 or bf16")
    args = parser.parse_args()

    precision = Precision.resolve(args.precision)
    loaded = load_model(ModelSpec(source=args.model), task_vocabulary())
    task = TASKS.get("debias")(TASKS.get("debias").Options(), loaded.tokenizer)
    base = task.observe_base(Runner(loaded.tokenizer, FP32, 32, False), loaded.model)
    task.bind(base)
    examples = task.train_examples(base, 0)
    budget = BudgetSpec(steps=args.steps, batch_size=args.batch_size)
    lora = METHODS.get("lora")
    methods = [lora(lora.Options(rank=r, lr=lr)) for r in args.ranks for lr in args.lrs]
    print(f"{loaded.description}, {precision.name}, torch {torch.__version__} on {torch.get_num_threads()} threads; "
          f"ranks {args.ranks}, lrs {args.lrs}, {args.steps} steps of batch {args.batch_size}, {len(examples)} examples")

    def one_at_a_time(steps: BudgetSpec, show: bool) -> tuple[list[dict], float]:
        weights, total = [], 0.0
        for method in methods:
            torch.manual_seed(0)
            model = method.prepare(copy.deepcopy(loaded.model))
            t0 = time.perf_counter()
            train(model, method, examples, loaded.tokenizer, steps, precision, seed=0, progress=False)
            seconds = time.perf_counter() - t0
            total += seconds
            weights.append(get_peft_model_state_dict(model))
            if show:
                print(f"  alone r={method.rank} lr={method.options.lr}: {seconds:.1f} s")
        return weights, total

    one_at_a_time(BudgetSpec(steps=2, batch_size=args.batch_size), show=False)  # warm-up: first calls, allocator
    alone, alone_seconds = one_at_a_time(budget, show=True)

    def pack(group: list) -> list:
        members = [PackMember(m, examples, 0, f"r={m.rank} lr={m.options.lr}") for m in group]
        return train_pack(loaded.model, members, loaded.tokenizer, budget, precision, progress=False)

    t0 = time.perf_counter()
    outcomes = pack(methods)
    packed_seconds = time.perf_counter() - t0
    print(f"one at a time {alone_seconds:.1f} s, one pack {packed_seconds:.1f} s: {alone_seconds / packed_seconds:.2f}x")
    for method, weights, outcome in zip(methods, alone, outcomes):
        worst = worst_distance(get_peft_model_state_dict(outcome.model), weights)
        print(f"  r={method.rank} lr={method.options.lr}: worst layer's relative distance packed vs alone {worst:.2e}"
              + ("" if outcome.error is None else f" ({outcome.error})"))
    repeated, again = one_at_a_time(budget, show=False)  # once more after the pack: how much the machine's load moved
    print(f"one at a time again {again:.1f} s: {again / packed_seconds:.2f}x")
    print(f"  lone runs repeated: worst layer's relative distance {max(map(worst_distance, repeated, alone)):.2e} "
          "(0 where training is deterministic)")
    if len(args.lrs) > 1:
        t0 = time.perf_counter()
        for rank in args.ranks:
            pack([m for m in methods if m.rank == rank])
        by_rank = time.perf_counter() - t0
        print(f"one pack per rank {by_rank:.1f} s: {alone_seconds / by_rank:.2f}x (one pack of all: "
              f"{alone_seconds / packed_seconds:.2f}x)")


if __name__ == "__main__":
    main()
