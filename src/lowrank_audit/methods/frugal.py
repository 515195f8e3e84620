"""`frugal`: full-weight training with the FRUGAL optimizer (methods/optim/frugal.py): Adam on a rank-r
projection of each block matrix's gradient, state-free signSGD on the residual, Adam on the other weights.
"""

from __future__ import annotations

from typing import Literal

import torch
from pydantic import PositiveFloat
from torch import nn

from .galore import ProjectedOptimizerMethod, ProjectedOptions
from .optim import Frugal


class FrugalOptions(ProjectedOptions):
    projection: Literal["svd", "random", "blocks"] = "svd"
    """Subspace of the state-full part: top singular vectors of the gradient, random, or a rotating block of columns."""
    sign_lr: PositiveFloat | None = None
    """Learning rate of the state-free signSGD part; default `lr`."""


class FrugalMethod(ProjectedOptimizerMethod):
    name = "frugal"
    description = "FRUGAL: every weight trained; Adam on a rank-r projection of each matrix gradient, signSGD on the rest."
    Options = FrugalOptions

    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        o = self.options
        groups = self.param_groups(model, rank=o.rank, projection=o.projection, update_interval=o.update_interval)
        return Frugal(groups, lr=o.lr, weight_decay=o.weight_decay, sign_lr=o.sign_lr)
