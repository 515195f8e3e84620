"""The metric library: pure functions of arrays, each with its definition in its docstring."""

from .bias import category_mass, group_gap
from .divergence import js_divergence, kl_divergence, shift_recovered, token_kl
from .stats import bootstrap_ci
from .weights import effective_rank, energy_outside_rank, subspace_overlap

__all__ = [
    "bootstrap_ci",
    "category_mass",
    "effective_rank",
    "energy_outside_rank",
    "group_gap",
    "js_divergence",
    "kl_divergence",
    "shift_recovered",
    "subspace_overlap",
    "token_kl",
]
