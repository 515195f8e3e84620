"""Weight updates dW = W_m - W_0 of the Linear layers inside the transformer blocks, and their geometry.

Any method is analysed the same way: PEFT adapters are merged into a copy first (for LoRA the merged
update is exactly (alpha / r) B A), so the analysis never depends on how a method parametrises dW.

Intruder dimensions need two more decompositions per adapted matrix: all left singular vectors of W_0 (a full SVD,
the same for every run of a sweep, so computed once per loaded base model and kept: at most the size of the model's
block weights in float32, 0.34 GB for SmolLM2-135M) and the top-k left singular vectors of W_0 + dW for each run
(the top-k eigenvectors of the smaller float64 Gram matrix: 2-3x less time than a float32 SVD of SmolLM2's
576 x 576 to 1536 x 576 matrices on this 2-core machine; `benchmarks/intruders_cost.py` times it per run).
"""

from __future__ import annotations

import copy
import re
import weakref
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..metrics import effective_rank, energy_outside_rank, intruder_count, max_abs_cosines, subspace_overlap
from ..records import MetricRow

BLOCK = re.compile(r"\.(?:layers|h|layer)\.(\d+)\.")
MAX_SUBSPACE = 128
SKETCH = MAX_SUBSPACE + 16
"""Columns of the random sketch that tests whether a dW is of numerically low rank (rank <= SKETCH)."""
LOW_RANK_RESIDUAL = 1e-4
"""A dW counts as of rank <= SKETCH when ||dW - Q Q^T dW||_F <= this * ||dW||_F. Merging rounds every entry of
W0 + dW to float32, which adds noise of 2.5e-8 ||W0||_F (measured; 0.4 x the unit roundoff): at most 2e-5 ||dW||_F
on the quick preset's trained LoRA updates (r = 1-64, ||dW|| >= 1.3e-3 ||W0||), while full fine-tuning leaves
1.4e-2 to 0.22 of ||dW||_F outside even its best rank-144 approximation. At 1e-4 every low-rank update larger than
2.5e-4 ||W0||_F passes, and each singular value moves by at most 1e-4 ||dW||_F from the full SVD's (Weyl)."""


@dataclass(frozen=True)
class Spectrum:
    """Singular values of one dW and its top left singular vectors (at most MAX_SUBSPACE of them)."""

    singular_values: np.ndarray
    left: np.ndarray
    top_cosines: np.ndarray | None = None
    """For W_tuned = W_0 + dW: max |cos| of each of its top-k left singular vectors with every left singular vector of
    W_0 (`metrics.max_abs_cosines`); None where not measured (no base given, or dW = 0: the matrix was not adapted)."""


def _plain(model: nn.Module) -> nn.Module:
    """The model with any PEFT adapter merged in (on a copy, so the trained adapter is kept)."""
    return copy.deepcopy(model).merge_and_unload() if hasattr(model, "merge_and_unload") else model


def weight_deltas(model: nn.Module, base: nn.Module) -> dict[str, torch.Tensor]:
    """dW for every Linear weight inside a transformer block, keyed by its module name."""
    plain = _plain(model)
    out = {}
    for name, module in plain.named_modules():
        if isinstance(module, nn.Linear) and BLOCK.search(f".{name}."):
            out[name] = (module.weight.detach().float() - base.get_submodule(name).weight.detach().float())
    return out


def _svd(dw: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All min(m, n) singular values of dw and its top MAX_SUBSPACE left singular vectors. A dw of numerically low
    rank (everything outside a SKETCH-dimensional column space is float32 noise, e.g. any merged low-rank adapter)
    gets the SVD of its projection onto that space (3-4x cheaper at 576 x 1536); any other dw gets the full SVD."""
    if 2 * SKETCH <= min(dw.shape):
        # hand-written: torch.svd_lowrank and sklearn's randomized_svd approximate; none checks exactness and falls back
        omega = torch.randn(dw.shape[1], SKETCH, generator=torch.Generator().manual_seed(0))
        q = torch.linalg.qr(dw @ omega).Q
        small = q.T @ dw
        if torch.linalg.matrix_norm(dw - q @ small) <= LOW_RANK_RESIDUAL * torch.linalg.matrix_norm(dw):
            u, s, _ = torch.linalg.svd(small, full_matrices=False)
            return torch.cat([s, s.new_zeros(min(dw.shape) - SKETCH)]), (q @ u)[:, :MAX_SUBSPACE]
    u, s, _ = torch.linalg.svd(dw, full_matrices=False)
    return s, u[:, :MAX_SUBSPACE]


_BASE_LEFT: "weakref.WeakKeyDictionary[nn.Module, dict[str, np.ndarray]]" = weakref.WeakKeyDictionary()


def base_left_vectors(base: nn.Module, name: str) -> np.ndarray:
    """All min(m, n) left singular vectors of the base's weight `name` (float32 SVD, as PEFT and the paper's code
    compute them), kept per loaded base model: every run of a sweep (and every audited adapter) reuses them."""
    cached = _BASE_LEFT.setdefault(base, {})
    if name not in cached:
        cached[name] = torch.linalg.svd(base.get_submodule(name).weight.detach().float(), full_matrices=False).U.numpy()
    return cached[name]


def top_left_vectors(w: torch.Tensor, k: int) -> torch.Tensor:
    """The top-k left singular vectors of w (as columns, largest first): eigenvectors of the smaller Gram matrix in
    float64, where squaring the condition number costs no visible accuracy for the top vectors (tested against
    numpy's SVD); for a tall w, u_i = w v_i / s_i."""
    w = w.double()
    k = min(k, min(w.shape))
    if w.shape[0] <= w.shape[1]:
        return torch.linalg.eigh(w @ w.T).eigenvectors[:, -k:].flip(1)
    values, vectors = torch.linalg.eigh(w.T @ w)
    v = vectors[:, -k:].flip(1)
    return (w @ v) / values[-k:].flip(0).clamp_min(0).sqrt()


def spectra(deltas: dict[str, torch.Tensor], base: nn.Module | None = None, top_k: int = 10) -> dict[str, Spectrum]:
    """SVD of every dW, in float32 (float64 costs up to 30x more on tall matrices for no visible change); with the base
    model, also each adapted W_0 + dW's intruder cosines over its top `top_k` left singular vectors."""
    out = {}
    for name, dw in deltas.items():
        s, left = _svd(dw.float())
        cosines = None
        if base is not None and bool(dw.any()):
            tuned = base.get_submodule(name).weight.detach().float() + dw.float()
            cosines = max_abs_cosines(top_left_vectors(tuned, top_k).numpy(), base_left_vectors(base, name))
        out[name] = Spectrum(s.numpy(), left.numpy(), cosines)
    return out


def _where(name: str) -> tuple[int | None, str]:
    """(block number counted from 1, as the logit lens counts layers; module type such as 'q_proj')."""
    match = BLOCK.search(f".{name}.")
    return (int(match.group(1)) + 1 if match else None), name.rsplit(".", 1)[-1]


SUMMED = frozenset({"weight_intruders", "weight_adapted_matrices"})
"""Metrics whose per-module-type and overall rows are sums over matrices (the paper counts intruders summed over the
target modules), not means."""
COUNTED = frozenset({"weight_adapted_matrices"})
"""Metrics stored per module type and overall only (a per-matrix row would always read 1)."""


def weight_update_rows(own: dict[str, Spectrum], full: dict[str, Spectrum] | None, rank: int | None,
                       intruder_epsilon: float = 0.5) -> list[MetricRow]:
    """Per adapted matrix (layer, module type) and averaged (intruders: summed) per module type and overall, over the
    matrices the method adapts only (a dW that is exactly zero, a module the method does not target, would enter the
    means with effective rank 0 and an overlap of arbitrary singular vectors):

    weight_adapted_matrices how many matrices the method adapts (per module type and overall), so the report says
                            which modules the means are over

    weight_effective_rank   effective rank of dW_m
    weight_update_norm      ||dW_m||_F
    weight_intruders        intruder dimensions of W_0 + dW_m: top-k left singular vectors with max |cos| below
                            `intruder_epsilon` against every left singular vector of W_0 (adapted matrices only)
    weight_energy_outside   share of full fine-tuning's ||dW_F||^2 outside its best rank-r approximation
    weight_subspace_overlap overlap of the top-r left singular subspaces of dW_m and dW_F
    (the last two need a rank r and the full fine-tune's update).
    """
    per: dict[str, list[tuple[int | None, str, float]]] = {}
    for name, spec in own.items():
        if not spec.singular_values.any():
            continue
        layer, module = _where(name)
        per.setdefault("weight_adapted_matrices", []).append((layer, module, 1.0))
        per.setdefault("weight_effective_rank", []).append((layer, module, effective_rank(spec.singular_values)))
        per.setdefault("weight_update_norm", []).append((layer, module, float(np.sqrt((spec.singular_values**2).sum()))))
        if spec.top_cosines is not None:
            per.setdefault("weight_intruders", []).append((layer, module, float(intruder_count(spec.top_cosines, intruder_epsilon))))
        if full is not None and rank is not None and name in full:
            ref = full[name]
            k = min(rank, ref.left.shape[1], spec.left.shape[1])
            per.setdefault("weight_energy_outside", []).append((layer, module, energy_outside_rank(ref.singular_values, rank)))
            per.setdefault("weight_subspace_overlap", []).append((layer, module, subspace_overlap(spec.left[:, :k], ref.left[:, :k])))
    rows = []
    for metric, values in per.items():
        total = np.sum if metric in SUMMED else np.mean
        if metric not in COUNTED:
            rows += [MetricRow(metric, v, group_name=module, layer=layer) for layer, module, v in values]
        for module in sorted({m for _, m, _ in values}):
            rows.append(MetricRow(metric, float(total([v for _, m, v in values if m == module])), group_name=module))
        rows.append(MetricRow(metric, float(total([v for _, _, v in values]))))
    return rows
