"""Method registry: one module per method family, one register() line each."""

import logging

# bitsandbytes (a dependency of galore-torch, imported by peft when present) warns at import about a 4-bit
# CPU kernel this project never uses
logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)

from ..registry import Registry  # noqa: E402
from .base import Method, MethodOptions, optimizer_state_bytes, trainable_parameters  # noqa: E402
from .base_model import BaseModelMethod  # noqa: E402
from .frugal import FrugalMethod  # noqa: E402
from .full import FullFineTuning  # noqa: E402
from .galore import GaLore  # noqa: E402
from .lora import Dora, Lora  # noqa: E402
from .lowrank_adapters import LOWRANK_ADAPTERS  # noqa: E402
from .peft_zoo import PEFT_ZOO  # noqa: E402

METHODS: Registry[type[Method]] = Registry("method")
for _cls in (BaseModelMethod, FullFineTuning, Lora, Dora, *PEFT_ZOO, GaLore, FrugalMethod, *LOWRANK_ADAPTERS):
    METHODS.register(_cls.name, _cls)

__all__ = ["METHODS", "Method", "MethodOptions", "optimizer_state_bytes", "trainable_parameters"]
