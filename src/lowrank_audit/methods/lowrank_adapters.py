"""Low-rank adapters not in `peft`: `lora-xs`, `lora-sb` and `ffa-lora`, sharing one small module.

Each adapted Linear gets its weight re-parametrised as W = W0 + scale * B R A (torch parametrization), so
the model keeps its module names and `module.weight` is always the effective weight. Frozen factors are
buffers, trained ones parameters; all are saved to `adapter.safetensors`, so a reload needs no SVD.
The effective weight is recomputed at every forward pass (one (out x r)(r x in) product per layer).

Trainable parameters per adapted (out x in) layer: lora-xs and lora-sb r * r (R only); ffa-lora r * out (B only).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar, Iterator

import torch
from safetensors.torch import load_file, save_file
from torch import nn
from torch.nn.utils import parametrize

from ..errors import AuditError
from .base import Batch, Method
from .lowrank_adapters_card import FfaLoraCard, LoraSBCard, LoraXSCard

FACTORS = ("B", "R", "A")


class LowRankDelta(nn.Module):
    """Parametrization W -> W + scale * B R A (R omitted when None); factors named in `trained` are parameters."""

    def __init__(self, factors: dict[str, torch.Tensor | None], trained: tuple[str, ...], scale: float) -> None:
        super().__init__()
        self.scale = scale
        for name, value in factors.items():
            if value is None:
                continue
            if name in trained:
                self.register_parameter(name, nn.Parameter(value))
            else:
                self.register_buffer(name, value)

    def delta(self) -> torch.Tensor:
        up = self.B @ self.R if hasattr(self, "R") else self.B
        return self.scale * (up @ self.A)

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + self.delta().to(weight.dtype)


class LowRankAdapterMethod(Method):
    """Shared base: pick the target Linears, attach a LowRankDelta to each, save and reload the factors."""

    size_option: ClassVar[str | None] = "rank"
    trained: ClassVar[tuple[str, ...]] = ("R",)
    has_r: ClassVar[bool] = True

    @property
    def rank(self) -> int:
        return self.options.rank

    def empty(self, weight: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Zero B (out x r), R (r x r, or None) and A (r x in) for a layer with this weight."""
        out_f, in_f = weight.shape
        r = self.options.rank
        return {"B": weight.new_zeros(out_f, r), "R": weight.new_zeros(r, r) if self.has_r else None,
                "A": weight.new_zeros(r, in_f)}

    def factors(self, weight: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """Initial factors for a layer with this frozen weight (zeros unless the method says otherwise)."""
        return self.empty(weight)

    def scale(self) -> float:
        return 1.0

    def targets(self, model: nn.Module) -> dict[str, nn.Linear]:
        """The Linear layers this method adapts (never the output head)."""
        wanted = self.options.target_modules
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        found = {
            name: m for name, m in model.named_modules()
            if isinstance(m, nn.Linear) and m is not head
            and (wanted == "all-linear" or name.rsplit(".", 1)[-1] in ([wanted] if isinstance(wanted, str) else wanted))
        }
        if not found:
            raise AuditError(f"{self.name} target_modules {wanted!r} match no linear layer of the model. "
                             "Use 'all-linear' or names such as q_proj, v_proj.")
        return found

    def check(self, model: nn.Module) -> None:
        """Reject a rank larger than an adapted layer's smaller dimension, and targets that match nothing."""
        for name, m in self.targets(model).items():
            limit = min(m.in_features, m.out_features)
            if self.options.rank > limit:
                raise AuditError(
                    f"{self.name} rank {self.options.rank} is larger than layer {name} "
                    f"({m.out_features} x {m.in_features}) allows (at most {limit}). Use a rank <= {limit}."
                )

    def prepare(self, model: nn.Module) -> nn.Module:
        return self._attach(model, fresh=False)

    def _attach(self, model: nn.Module, fresh: bool) -> nn.Module:
        """Freeze the model and parametrise every target; `fresh` = zero factors of the right shapes (for a load)."""
        for p in model.parameters():
            p.requires_grad_(False)
        for m in self.targets(model).values():
            init = self.empty(m.weight) if fresh else self.factors(m.weight.detach())
            parametrize.register_parametrization(m, "weight", LowRankDelta(init, self.trained, self.scale()))
        return model

    def save(self, model: nn.Module, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        tensors = {f"{name}.{f}": getattr(delta, f).detach().contiguous()
                   for name, delta in adapters(model).items() for f in FACTORS if hasattr(delta, f)}
        save_file(tensors, str(folder / "adapter.safetensors"))
        (folder / "adapter_config.json").write_text(
            json.dumps({"method": self.name, "options": self.options.model_dump()}, indent=2))

    def load(self, base: nn.Module, folder: Path) -> nn.Module:
        model = self._attach(base, fresh=True)
        tensors = load_file(str(folder / "adapter.safetensors"))
        layers = adapters(model)
        expected = {f"{name}.{f}" for name, delta in layers.items() for f in FACTORS if hasattr(delta, f)}
        if set(tensors) != expected:
            raise AuditError(f"{folder}: the saved {self.name} adapter does not match this model "
                             f"(missing {sorted(expected - set(tensors))[:3]}, unexpected {sorted(set(tensors) - expected)[:3]}).")
        with torch.no_grad():
            for key, value in tensors.items():
                name, factor = key.rsplit(".", 1)
                getattr(layers[name], factor).copy_(value)
        return model


def adapters(model: nn.Module) -> dict[str, LowRankDelta]:
    """Module name -> its LowRankDelta, for every parametrised Linear."""
    return {name: m.parametrizations.weight[0] for name, m in model.named_modules()
            if parametrize.is_parametrized(m, "weight") and isinstance(m.parametrizations.weight[0], LowRankDelta)}


def _svd(matrix: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(matrix.float(), full_matrices=False)
    return u[:, :rank], s[:rank], vh[:rank]


class LoraXS(LoraXSCard, LowRankAdapterMethod):
    def factors(self, weight: torch.Tensor) -> dict[str, torch.Tensor | None]:
        u, s, vh = _svd(weight, self.options.rank)
        return {**self.empty(weight), "B": (u * s).to(weight.dtype), "A": vh.to(weight.dtype)}


class LoraSB(LoraSBCard, LowRankAdapterMethod):
    def start(self, model: nn.Module, batches: Iterator[Batch], steps: int) -> None:
        """Accumulate the full gradient of every adapted W0, then set B, A (its top singular vectors) and R."""
        layers = {name: model.get_submodule(name) for name in adapters(model)}
        originals = {name: m.parametrizations.weight.original for name, m in layers.items()}
        for w in originals.values():
            w.requires_grad_(True)
        for _ in range(self.options.init_batches):
            ids, mask, labels = next(batches)
            (model(input_ids=ids, attention_mask=mask, labels=labels).loss / self.options.init_batches).backward()
        with torch.no_grad():
            for name, w in originals.items():
                u, s, vh = _svd(w.grad, self.options.rank)
                delta = layers[name].parametrizations.weight[0]
                delta.B.copy_(u)
                delta.A.copy_(vh)
                delta.R.copy_(torch.diag(-self.options.init_lr * s))
                w.grad = None
                w.requires_grad_(False)
        model.zero_grad(set_to_none=True)

    def state_dict(self, model: nn.Module) -> dict[str, Any]:
        """The frozen B and A chosen in `start` (kept, so a resume never depends on recomputing an SVD bit for bit)."""
        return {f"{name}.{f}": getattr(delta, f) for name, delta in adapters(model).items() for f in ("B", "A")}

    def load_state_dict(self, model: nn.Module, state: dict[str, Any]) -> None:
        """Copy the saved B and A into the adapters."""
        layers = adapters(model)
        with torch.no_grad():
            for key, value in state.items():
                name, factor = key.rsplit(".", 1)
                getattr(layers[name], factor).copy_(value)


class FfaLora(FfaLoraCard, LowRankAdapterMethod):
    trained = ("B",)
    has_r = False

    def scale(self) -> float:
        o = self.options
        return (o.alpha if o.alpha is not None else 2 * o.rank) / o.rank

    def factors(self, weight: torch.Tensor) -> dict[str, torch.Tensor | None]:
        init = self.empty(weight)
        nn.init.kaiming_uniform_(init["A"], a=math.sqrt(5))
        return init


LOWRANK_ADAPTERS = (LoraXS, LoraSB, FfaLora)
