"""Precision setting: fp32, or bf16 autocast (fp32 master weights) where the hardware runs it fast."""

from __future__ import annotations

import contextlib
from typing import ContextManager

import torch


def bf16_is_fast() -> bool:
    """True on CUDA with bf16 support, or on a CPU whose oneDNN has native bf16 (AVX512-BF16 / AMX)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str) -> str:
    """'auto' becomes 'bf16' where it is fast here, else 'fp32'."""
    if precision == "auto":
        return "bf16" if bf16_is_fast() else "fp32"
    return precision


def autocast(precision: str, device: str = "cpu") -> ContextManager:
    """torch.autocast for bf16 (as torch intends: matmuls in bf16, reductions in fp32); a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device_type=device, dtype=torch.bfloat16)
    return contextlib.nullcontext()
