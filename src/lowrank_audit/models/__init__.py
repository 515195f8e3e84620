"""Base models and tokenizers: the embedded default (GGUF), HF ids / local paths, tiny random models."""

from .load import LoadedModel, load_model, model_identity
from .precision import autocast, resolve_precision

__all__ = ["LoadedModel", "autocast", "load_model", "model_identity", "resolve_precision"]
