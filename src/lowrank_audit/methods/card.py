"""What config validation reads of a method, importable without torch: its options and its card (name, description,
options). A method's implementation subclasses its card, in a module the registry imports only to build a run."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, NonNegativeFloat, PositiveFloat


class MethodOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True, allow_inf_nan=False)

    lr: PositiveFloat = 1e-4
    """AdamW learning rate."""
    weight_decay: NonNegativeFloat = 0.0
    """AdamW weight decay."""


class PeftOptions(MethodOptions):
    lr: PositiveFloat = 1e-3
    """AdamW learning rate."""
    target_modules: list[str] | str = "all-linear"
    """Module names to adapt, or 'all-linear' (every linear layer but the output head)."""


class MethodCard:
    """A method's name, description and options (methods/__init__.py registers it with its implementation's path)."""

    name: ClassVar[str]
    description: ClassVar[str]
    Options: ClassVar[type[MethodOptions]] = MethodOptions
