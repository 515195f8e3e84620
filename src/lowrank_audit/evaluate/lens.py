"""Logit lens: decode each block's residual stream through the model's own final norm and unembedding.

HF models return hidden_states = (embeddings, after block 1, ..., after block L) where the last entry
is already final-normed; so blocks 1..L-1 go through norm + head, block L through the head alone, and
layer L equals the model's output distribution. Architectures differ only in where the final norm is.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from ..errors import AuditError
from ..registry import Registry

Readout = Callable[[torch.Tensor], torch.Tensor]


def _base(model: nn.Module) -> nn.Module:
    """The transformers model under a PEFT wrapper (norms and heads are never adapted)."""
    return model.get_base_model() if hasattr(model, "get_base_model") else model


def _llama(model: nn.Module) -> Readout:
    return model.model.norm


def _gpt2(model: nn.Module) -> Readout:
    return model.transformer.ln_f


def _opt(model: nn.Module) -> Readout:
    decoder = model.model.decoder
    norm = decoder.final_layer_norm or nn.Identity()
    project = decoder.project_out or nn.Identity()
    return lambda h: project(norm(h))


LENS_ARCHITECTURES: Registry[Callable[[nn.Module], Readout]] = Registry("logit-lens architecture")
for _names, _fn in ((("llama", "mistral", "qwen2", "qwen3", "gemma", "phi3", "olmo2"), _llama),
                    (("gpt2",), _gpt2), (("opt",), _opt)):
    for _name in _names:
        LENS_ARCHITECTURES.register(_name, _fn)


def readout(model: nn.Module) -> Readout:
    """The final norm (and projection) of `model`'s architecture; a clear error for unsupported ones."""
    base = _base(model)
    model_type = getattr(base.config, "model_type", "?")
    if model_type not in LENS_ARCHITECTURES:
        raise AuditError(
            f"the logit lens does not know where the final norm of a {model_type!r} model is "
            f"(supported: {', '.join(LENS_ARCHITECTURES.names())}); register it in evaluate/lens.py."
        )
    return LENS_ARCHITECTURES.get(model_type)(base)


def lens_logits(model: nn.Module, hidden_states: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Logits of every block's output: [n_layers, ..., vocab]; the last layer is the model's own logits."""
    norm = readout(model)
    head = _base(model).get_output_embeddings()
    layers = [norm(h) for h in hidden_states[1:-1]] + [hidden_states[-1]]
    return torch.stack([head(h) for h in layers])
