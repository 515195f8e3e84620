"""Precision setting: fp32, or bf16 autocast (fp32 master weights) where the hardware runs it fast.

A setting is resolved once into a `Precision`, which computation takes; the name alone is what is stored and hashed."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, ContextManager, Iterator

import torch
from torch import nn
from torch.nn.attention import SDPBackend, sdpa_kernel

SHORT_ATTENTION = 128
"""Longest sequence for which bf16 training on a CPU uses SDPA's math kernel: torch's CPU flash-attention backward in
bf16 is 2-6x slower than the math kernel from 12 to 128 tokens and faster from about 192 (BENCHMARKS.md)."""


def bf16_is_fast() -> bool:
    """True on CUDA with bf16 support, or on a CPU whose oneDNN has native bf16 (AVX512-BF16 / AMX)."""
    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


MIXED_PRECISION = {"fp32": "no", "bf16": "bf16"}
"""Each precision's accelerate mixed_precision (bf16: autocast with fp32 master weights)."""


def resolve_precision(precision: str) -> str:
    """'auto' becomes 'bf16' where it is fast here, else 'fp32'."""
    if precision == "auto":
        return "bf16" if bf16_is_fast() else "fp32"
    return precision


@dataclass(frozen=True)
class Precision:
    """One resolved precision, built once: its name (what runs store and fingerprints hash) and what it means for the
    computation: autocast, the training attention kernel, weights cast once, accelerate's mixed-precision mode."""

    name: str
    """'fp32' or 'bf16' ('auto' is resolved by `resolve`)."""

    def __post_init__(self) -> None:
        if self.name not in MIXED_PRECISION:
            raise ValueError(f"precision {self.name!r}: use one of {', '.join(MIXED_PRECISION)} "
                             "('auto' is resolved first, with Precision.resolve)")

    @classmethod
    def resolve(cls, setting: str) -> Precision:
        """The precision a config or CLI setting ('auto', 'fp32' or 'bf16') means on this machine."""
        return cls(resolve_precision(setting))

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    @property
    def mixed_precision(self) -> str:
        """accelerate's mixed_precision for training at this precision."""
        return MIXED_PRECISION[self.name]

    def autocast(self, device: str = "cpu") -> ContextManager:
        """torch.autocast for bf16 (as torch intends: matmuls in bf16, reductions in fp32); a no-op for fp32."""
        if self.bf16:
            return torch.autocast(device_type=device, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def training_attention(self, device: torch.device, width: int) -> ContextManager:
        """The SDPA kernel for one bf16 training step on a CPU: the math kernel for short sequences (see
        SHORT_ATTENTION), torch's own choice otherwise (fp32, GPUs, long sequences)."""
        if self.bf16 and device.type == "cpu" and width <= SHORT_ATTENTION:
            return sdpa_kernel([SDPBackend.MATH])
        return contextlib.nullcontext()

    @contextlib.contextmanager
    def weights_cast_once(self, model: nn.Module, trainable: bool = False) -> Iterator[None]:
        """While active, each fp32 nn.Linear whose weight is frozen (with `trainable`, every one: evaluation, where
        nothing trains) computes under bf16 autocast with a bf16 copy of its weight made once: the same numbers
        autocast gives.

        Autocast caches its casts only for weights that require grad, and only until it exits, so it casts weights
        again at every call: for a LoRA step on short sequences that is a tenth of the step. `.weight` itself stays
        fp32, so code that reads it (DoRA's weight norm, checkpoints) sees what it saw before. The copies hold half the
        fp32 size of the weights they copy. Only on a CPU, where it was measured (BENCHMARKS.md); a no-op for fp32 and
        on GPUs, whose memory is the scarcer resource.
        """
        if not self.bf16 or any(p.device.type != "cpu" for p in model.parameters()):
            yield
            return
        patched = []
        for module in model.modules():
            if (type(module) is nn.Linear and module.weight.dtype == torch.float32
                    and (trainable or not module.weight.requires_grad)
                    and "forward" not in vars(module)):  # leave forwards that others replaced (accelerate's hooks) alone
                module.forward = _cast_once(module, torch.bfloat16, trainable)
                patched.append(module)
        try:
            yield
        finally:
            for module in patched:
                del module.forward


FP32 = Precision("fp32")
"""The default precision of evaluation forward passes."""


def _cast_once(module: nn.Linear, dtype: torch.dtype, trainable: bool) -> Callable[[torch.Tensor], torch.Tensor]:
    """`module`'s forward with its weight and bias cast to `dtype` now (a bias that trains, unless `trainable`, is left to
    autocast); outside autocast to `dtype`, the original."""
    weight = module.weight.detach().to(dtype)
    bias = module.bias
    if bias is not None and (trainable or not bias.requires_grad):
        bias = bias.detach().to(dtype)
    original = type(module).forward.__get__(module)

    def forward(x: torch.Tensor) -> torch.Tensor:
        kind = x.device.type
        if torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) == dtype:
            return nn.functional.linear(x, weight, bias)
        return original(x)

    return forward
