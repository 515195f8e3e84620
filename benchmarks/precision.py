"""Matrix-multiply rate (fp32 vs bf16) and a forward/backward step of the default model under each precision.

Run on a quiet machine: python benchmarks/precision.py
Prints TFLOP/s of a square matmul and seconds per training step of SmolLM2-135M at two batch shapes,
fp32 and bf16 autocast (the way lowrank-audit trains), so BENCHMARKS.md numbers come from one run.
"""

from __future__ import annotations

import copy
import time

import torch

from lowrank_audit.config import ModelSpec
from lowrank_audit.models import Precision, load_model


def matmul_tflops(dtype: torch.dtype, n: int = 2048, repeats: int = 20) -> float:
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n**3 * repeats / (time.perf_counter() - start) / 1e12


def step_seconds(model: torch.nn.Module, precision: str, batch: int, length: int, repeats: int = 5) -> float:
    model = copy.deepcopy(model).train()
    for p in model.parameters():
        p.requires_grad_(True)
    ids = torch.randint(0, model.config.vocab_size, (batch, length))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5)
    times = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        with Precision(precision).autocast():
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i:
            times.append(time.perf_counter() - start)
    return sum(times) / len(times)


def main() -> None:
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}")
    fp32, bf16 = matmul_tflops(torch.float32), matmul_tflops(torch.bfloat16)
    print(f"matmul 2048^3: fp32 {fp32:.2f} TFLOP/s, bf16 {bf16:.2f} TFLOP/s ({bf16 / fp32:.1f}x)")
    model = load_model(ModelSpec(source="default")).model
    for batch, length in ((16, 10), (16, 128)):
        t32 = step_seconds(model, "fp32", batch, length)
        t16 = step_seconds(model, "bf16", batch, length)
        print(f"full fine-tuning step, batch {batch} x {length} tokens: fp32 {t32:.3f} s, bf16 autocast {t16:.3f} s "
              f"({t32 / t16:.2f}x)")


if __name__ == "__main__":
    main()
