"""`galore`'s options and card, and the options every projected optimizer shares (methods/galore.py)."""

from __future__ import annotations

from pydantic import NonNegativeFloat, PositiveFloat, PositiveInt

from .card import MethodCard
from .full_card import FullOptions


class ProjectedOptions(FullOptions):
    lr: PositiveFloat = 2e-4
    """Learning rate."""
    weight_decay: NonNegativeFloat = 0.0
    """Decoupled weight decay."""
    rank: PositiveInt = 128
    """Rank of the gradient projection of each weight matrix."""
    update_interval: PositiveInt = 200
    """Steps between two recomputations of the projection."""


class GaLoreOptions(ProjectedOptions):
    scale: PositiveFloat = 0.25
    """Scale of the projected-back update (GaLore's alpha)."""


class GaLoreCard(MethodCard):
    name = "galore"
    description = "GaLore (galore-torch): every weight trained, Adam state on a rank-r SVD projection of each matrix gradient."
    Options = GaLoreOptions
