"""SDPA on this CPU: torch's default kernel (flash attention) against the math kernel, by sequence length.

Run on a quiet machine, for BENCHMARKS.md (it sets models.precision.SHORT_ATTENTION):
    python benchmarks/sdpa_kernels.py
SmolLM2-135M's attention shape (9 query heads sharing 3 key/value heads of 64 dims), batch 16, a boolean causal mask
as transformers passes with padding; milliseconds per call, forward + backward (training) and forward only.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

KERNELS = {"default": [SDPBackend.FLASH_ATTENTION, SDPBackend.MATH], "math": [SDPBackend.MATH]}


def milliseconds(length: int, dtype: torch.dtype, kernel: str, backward: bool, calls: int) -> float:
    """Mean time of one attention call (and its backward) after three warm-up calls."""
    q, k, v = (torch.randn(16, heads, length, 64, dtype=dtype, requires_grad=backward) for heads in (9, 3, 3))
    mask = torch.ones(16, 1, length, length, dtype=torch.bool).tril()
    with sdpa_kernel(KERNELS[kernel]), torch.set_grad_enabled(backward):
        for i in range(calls + 3):
            if i == 3:
                start = time.perf_counter()
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
            if backward:
                out.sum().backward()
    return (time.perf_counter() - start) / calls * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[8, 12, 16, 32, 64, 128, 192, 256, 512])
    parser.add_argument("--calls", type=int, default=20)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; ms per call, batch 16, 9/3 heads x 64")
    print("| tokens | bf16 fwd+bwd default | bf16 fwd+bwd math | fp32 fwd+bwd default | fp32 fwd+bwd math "
          "| bf16 fwd default | bf16 fwd math |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for length in args.lengths:
        cells = [milliseconds(length, dtype, kernel, backward, args.calls)
                 for dtype, backward in ((torch.bfloat16, True), (torch.float32, True), (torch.bfloat16, False))
                 for kernel in KERNELS]
        print(f"| {length} | " + " | ".join(f"{c:.2f}" for c in cells) + " |", flush=True)


if __name__ == "__main__":
    main()
