"""Method registry: one module per method family, one register() line each."""

from ..registry import Registry
from .base import Method, MethodOptions, trainable_parameters
from .base_model import BaseModelMethod
from .full import FullFineTuning
from .lora import Lora

METHODS: Registry[type[Method]] = Registry("method")
for _cls in (BaseModelMethod, FullFineTuning, Lora):
    METHODS.register(_cls.name, _cls)

__all__ = ["METHODS", "Method", "MethodOptions", "trainable_parameters"]
