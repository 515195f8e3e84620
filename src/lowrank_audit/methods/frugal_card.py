"""`frugal`'s options and card (methods/frugal.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import PositiveFloat

from .card import MethodCard
from .galore_card import ProjectedOptions


class FrugalOptions(ProjectedOptions):
    projection: Literal["svd", "random", "blocks"] = "svd"
    """Subspace of the state-full part: top singular vectors of the gradient, random, or a rotating block of columns."""
    sign_lr: PositiveFloat | None = None
    """Learning rate of the state-free signSGD part; default `lr`."""


class FrugalCard(MethodCard):
    name = "frugal"
    description = "FRUGAL: every weight trained; Adam on a rank-r projection of each matrix gradient, signSGD on the rest."
    Options = FrugalOptions
