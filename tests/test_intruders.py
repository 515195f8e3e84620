"""Intruder dimensions of W_0 + dW: planted cases, numpy's SVD as the reference, the per-module sums."""

import copy

import numpy as np
import pytest
import torch
from torch import nn

from lowrank_audit.evaluate.weights import spectra, top_left_vectors, weight_deltas, weight_update_rows
from lowrank_audit.methods import METHODS
from lowrank_audit.metrics import intruder_count, max_abs_cosines

rng = np.random.default_rng(0)


class _Block(nn.Module):
    """A stand-in base model: one Linear per module type inside `layers.<i>`, as in a transformer."""

    def __init__(self, weights: dict[str, np.ndarray]) -> None:
        super().__init__()
        self.layers = nn.ModuleList([nn.Module()])
        for name, w in weights.items():
            linear = nn.Linear(w.shape[1], w.shape[0], bias=False)
            linear.weight.data = torch.from_numpy(w).float()
            self.layers[0].add_module(name, linear)


def _base(m: int, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """W_0 = U diag(s) V^T with known, well separated singular values 1..3."""
    u, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
    v, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
    s = np.linspace(3.0, 1.0, min(m, n))
    return u @ np.diag(s) @ v.T, u, s, v


def _numpy_cosines(w0: np.ndarray, w_tuned: np.ndarray, k: int) -> np.ndarray:
    """The definition, directly: numpy's float64 SVDs of both matrices, as in Shuttleworth et al.'s code."""
    u0 = np.linalg.svd(w0, full_matrices=False)[0]
    ut = np.linalg.svd(w_tuned, full_matrices=False)[0][:, :k]
    return np.abs(ut.T @ u0).max(axis=1)


@pytest.mark.parametrize("shape", [(40, 30), (30, 40)])
def test_a_planted_direction_the_base_lacks_is_one_intruder(shape):
    m, n = shape
    w0, u, _, v = _base(m, n)
    # x has |cos| <= 1/sqrt(min(m, n)) ~ 0.17 with every base left singular vector: the equal mix of all of them, or
    # (tall W_0) a direction orthogonal to all of them.
    x = u.sum(1) / np.sqrt(u.shape[1]) if m <= n else np.linalg.qr(np.hstack([u, rng.standard_normal((m, 1))]))[0][:, -1]
    w_tuned = w0 + 10.0 * np.outer(x, v[:, 0])
    cos = _numpy_cosines(w0, w_tuned, 10)
    assert cos[0] < 0.5 and (cos[1:] > 0.5).all()  # the planted direction is the top one, the others stay the base's
    base = _Block({"q_proj": w0})
    spec = spectra({"layers.0.q_proj": torch.from_numpy(w_tuned - w0).float()}, base, top_k=10)["layers.0.q_proj"]
    assert intruder_count(spec.top_cosines, 0.5) == 1
    rows = {(r.metric, r.group_name, r.layer): r.value for r in weight_update_rows({"layers.0.q_proj": spec}, None, None)}
    assert rows["weight_intruders", "q_proj", 1] == 1.0


def test_an_update_that_only_rescales_the_base_directions_has_no_intruder():
    w0, u, s, v = _base(48, 32)
    scale = np.linspace(0.2, 5.0, len(s))  # reorders the singular values, keeps every singular vector
    dw = u @ np.diag(s * (scale - 1.0)) @ v.T
    base = _Block({"o_proj": w0})
    spec = spectra({"layers.0.o_proj": torch.from_numpy(dw).float()}, base, top_k=10)["layers.0.o_proj"]
    assert spec.top_cosines == pytest.approx(np.ones(10), abs=1e-3)
    assert intruder_count(spec.top_cosines) == 0


@pytest.mark.parametrize("shape", [(64, 64), (24, 64), (96, 40)])  # square, wide (k/v_proj), tall (gate/up_proj)
def test_cosines_agree_with_numpy_svds(shape):
    w0, *_ = _base(*shape)
    dw = 0.6 * rng.standard_normal(shape) / np.sqrt(shape[1])  # a full-rank update that moves some directions away
    base = _Block({"up_proj": w0})
    spec = spectra({"layers.0.up_proj": torch.from_numpy(dw).float()}, base, top_k=10)["layers.0.up_proj"]
    w_tuned = w0 + torch.from_numpy(dw).float().double().numpy()
    reference = _numpy_cosines(w0.astype(np.float32).astype(np.float64), w_tuned, 10)
    np.testing.assert_allclose(spec.top_cosines, reference, atol=1e-4)
    assert intruder_count(spec.top_cosines, 0.5) == int((reference < 0.5).sum())
    assert spec.top_cosines.min() < 0.9  # not a trivial case: the update moved the top directions


def test_top_left_vectors_are_numpys_for_tall_and_wide_matrices():
    for shape in [(50, 20), (20, 50)]:
        w = rng.standard_normal(shape)
        ours = top_left_vectors(torch.from_numpy(w), 5).numpy()
        ref = np.linalg.svd(w, full_matrices=False)[0][:, :5]
        np.testing.assert_allclose(np.abs((ours * ref).sum(0)), np.ones(5), atol=1e-10)  # same vectors up to sign


def test_max_abs_cosines_by_hand():
    basis = np.eye(3)
    u = np.array([[0.6, 0.0], [0.8, 0.0], [0.0, -1.0]])  # columns: (0.6, 0.8, 0) and (0, 0, -1)
    np.testing.assert_allclose(max_abs_cosines(u, basis), [0.8, 1.0])
    assert intruder_count(max_abs_cosines(u, basis), 0.9) == 1


def test_lora_rows_cover_only_the_adapted_matrices_and_sum_per_module(tiny):
    cls = METHODS.get("lora")
    model = cls(cls.Options(rank=2, target_modules=["q_proj", "v_proj"])).prepare(copy.deepcopy(tiny.model))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(10.0 * torch.randn(p.shape, generator=gen))  # a large update: it brings new top directions
    rows = weight_update_rows(spectra(weight_deltas(model, tiny.model), tiny.model), None, 2)
    per = {(r.group_name, r.layer): r.value for r in rows if r.metric == "weight_intruders"}
    layers = tiny.model.config.num_hidden_layers
    assert {g for g, layer in per if layer is not None} == {"q_proj", "v_proj"}
    for module in ("q_proj", "v_proj"):
        assert per[module, None] == sum(per[module, layer + 1] for layer in range(layers))
    assert per[None, None] == per["q_proj", None] + per["v_proj", None] > 0
