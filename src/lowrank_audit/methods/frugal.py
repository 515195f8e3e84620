"""`frugal`: full-weight training with the FRUGAL optimizer (methods/optim/frugal.py): Adam on a rank-r
projection of each block matrix's gradient, state-free signSGD on the residual, Adam on the other weights.
"""

from __future__ import annotations


import torch
from torch import nn

from .frugal_card import FrugalCard
from .galore import ProjectedOptimizerMethod
from .optim import Frugal


class FrugalMethod(FrugalCard, ProjectedOptimizerMethod):
    def optimizer(self, model: nn.Module) -> torch.optim.Optimizer:
        o = self.options
        groups = self.param_groups(model, rank=o.rank, projection=o.projection, update_interval=o.update_interval)
        return Frugal(groups, lr=o.lr, weight_decay=o.weight_decay, sign_lr=o.sign_lr)
