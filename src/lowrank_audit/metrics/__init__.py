"""The metric library: pure functions of arrays, each with its definition in its docstring."""

from .bias import category_mass, group_gap
from .divergence import js_divergence, kl_divergence, shift_recovered, token_kl
from .stats import bootstrap_ci

__all__ = [
    "bootstrap_ci",
    "category_mass",
    "group_gap",
    "js_divergence",
    "kl_divergence",
    "shift_recovered",
    "token_kl",
]
