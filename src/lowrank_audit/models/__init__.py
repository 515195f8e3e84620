"""Base models and tokenizers: the embedded default (GGUF), HF ids / local paths, tiny random models."""

from .load import LoadedModel, load_model, model_identity
from .precision import FP32, Precision, resolve_precision

__all__ = ["FP32", "LoadedModel", "Precision", "load_model", "model_identity", "resolve_precision"]
