"""The most a training step can reach of the 2048^3 matmul rate: its own matmuls timed alone, at its own shapes.

Run on a quiet machine, for BENCHMARKS.md:
    python benchmarks/matmul_ceiling.py                  # default model; 144 tokens a step is the quick preset's
    python benchmarks/matmul_ceiling.py --model tiny     # a check that the script runs
Every Linear layer of the transformer blocks (weight [N,K]) does three matmuls in a full fine-tuning step: forward
[T,K]x[K,N], the input gradient [T,N]x[N,K] and the weight gradient [N,T]x[T,K], for T tokens a step. A LoRA step
does the first two (the frozen weights get no gradient). Timed one by one, with nothing else running, their
FLOP-weighted rate is an upper bound for the share that train_efficiency.py reports: a step also does attention,
norms, casts and the optimizer.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

import torch

from lowrank_audit.config import ModelSpec
from lowrank_audit.models import load_model
from precision import matmul_tflops


def seconds(a: torch.Tensor, b: torch.Tensor, budget: float = 0.3) -> float:
    """Mean seconds of `a @ b`, repeated for about `budget` seconds after a warm-up."""
    for _ in range(3):
        a @ b
    start, n = time.perf_counter(), 0
    while time.perf_counter() - start < budget:
        a @ b
        n += 1
    return (time.perf_counter() - start) / n


def block_shapes(model: torch.nn.Module) -> Counter:
    """(in, out) features of the blocks' Linear layers, with how many layers have each (the output layer left out:
    the loop computes it only where a position predicts a label)."""
    head = model.get_output_embeddings()
    return Counter((m.in_features, m.out_features) for m in model.modules()
                   if isinstance(m, torch.nn.Linear) and m is not head)


def ceiling(shapes: Counter, tokens: int, dtype: torch.dtype) -> dict[str, tuple[float, float]]:
    """(TFLOP/s, seconds) of the blocks' matmuls in a full and in a LoRA step at `tokens` tokens, each matmul timed
    alone."""
    flops = {"full": 0.0, "lora": 0.0}
    time_ = {"full": 0.0, "lora": 0.0}
    for (k, n), count in shapes.items():
        x, w, g = (torch.randn(*s, dtype=dtype) for s in ((tokens, k), (n, k), (tokens, n)))  # w laid out as Linear's
        forward, input_grad, weight_grad = seconds(x, w.T), seconds(g, w), seconds(g.T, x)
        flop = 2 * tokens * k * n * count
        for kind, parts in (("full", (forward, input_grad, weight_grad)), ("lora", (forward, input_grad))):
            flops[kind] += flop * len(parts)
            time_[kind] += sum(parts) * count
    return {kind: (flops[kind] / time_[kind] / 1e12, time_[kind]) for kind in flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["default", "tiny"], default="default")
    parser.add_argument("--tokens", type=int, nargs="+", default=[144, 576, 2304])
    args = parser.parse_args()
    shapes = block_shapes(load_model(ModelSpec(source=args.model)).model)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}; block Linear shapes (in, out): count "
          f"{dict(shapes)}")
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        peak = matmul_tflops(dtype)
        print(f"{name}: matmul 2048^3 {peak:.2f} TFLOP/s")
        for tokens in args.tokens:
            parts = [f"{kind} step {rate:.2f} TFLOP/s ({rate / peak:.0%} of 2048^3) in {took:.3f} s"
                     for kind, (rate, took) in ceiling(shapes, tokens, dtype).items()]
            print(f"  {tokens:5d} tokens a step, the blocks' matmuls alone: " + "; ".join(parts))


if __name__ == "__main__":
    main()
