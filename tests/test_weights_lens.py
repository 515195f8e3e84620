"""Weight-update geometry against numpy's SVD and hand-worked cases; the logit lens against the model."""

import copy

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate import Runner
from lowrank_audit.evaluate.lens import lens_logits
from lowrank_audit.evaluate.weights import (LOW_RANK_RESIDUAL, MAX_SUBSPACE, SKETCH, spectra, weight_deltas,
                                            weight_update_rows)
from lowrank_audit.methods import METHODS
from lowrank_audit.metrics import effective_rank, energy_outside_rank, subspace_overlap
from lowrank_audit.models import FP32

rng = np.random.default_rng(0)


def test_effective_rank_of_known_spectra():
    assert effective_rank(np.ones(4)) == pytest.approx(4.0)
    assert effective_rank(np.array([3.0, 0, 0])) == pytest.approx(1.0)
    assert effective_rank(np.array([1.0, 1.0, 2.0])) == pytest.approx(np.exp(-(2 * 0.25 * np.log(0.25) + 0.5 * np.log(0.5))))
    assert effective_rank(np.zeros(3)) == 0.0


def test_energy_outside_rank_is_the_best_rank_r_error():
    w = rng.normal(size=(30, 20))
    u, s, vt = np.linalg.svd(w, full_matrices=False)
    for r in (1, 5, 19):
        best = (u[:, :r] * s[:r]) @ vt[:r]
        assert energy_outside_rank(s, r) == pytest.approx(np.linalg.norm(w - best) ** 2 / np.linalg.norm(w) ** 2)
    assert energy_outside_rank(s, 20) == pytest.approx(0.0, abs=1e-12)


def test_subspace_overlap_same_orthogonal_random():
    q, _ = np.linalg.qr(rng.normal(size=(200, 10)))
    assert subspace_overlap(q[:, :4], q[:, :4]) == pytest.approx(1.0)
    assert subspace_overlap(q[:, :4] @ np.linalg.qr(rng.normal(size=(4, 4)))[0], q[:, :4]) == pytest.approx(1.0)
    assert subspace_overlap(q[:, :4], q[:, 4:8]) == pytest.approx(0.0, abs=1e-12)
    random = np.mean([subspace_overlap(np.linalg.qr(rng.normal(size=(200, 4)))[0], q[:, :4]) for _ in range(50)])
    assert random == pytest.approx(4 / 200, rel=0.5)


def _with_spectrum(s: np.ndarray, m: int = 320, n: int = 480) -> np.ndarray:
    """A float64 m x n matrix with singular values s and random singular vectors."""
    u, v = np.linalg.qr(rng.normal(size=(m, len(s))))[0], np.linalg.qr(rng.normal(size=(n, len(s))))[0]
    return (u * s) @ v.T


def _assert_matches(spec, reference: np.ndarray) -> None:
    """Same singular values as float64 numpy and the same top-k left subspaces (as projections: vectors have signs)."""
    u, s, _ = np.linalg.svd(reference, full_matrices=False)
    assert spec.singular_values.shape == s.shape and spec.left.shape == (reference.shape[0], MAX_SUBSPACE)
    np.testing.assert_allclose(spec.singular_values, s, rtol=0, atol=1e-5 * s[0])
    for k in range(1, 9):
        assert np.linalg.norm(spec.left[:, :k] @ spec.left[:, :k].T - u[:, :k] @ u[:, :k].T, 2) < 1e-3


def test_merged_low_rank_update_takes_the_exact_shortcut():
    """(W0 + B A) - W0 in float32 (merge rounding included) is factored through the sketch, which leaves zeros past
    it, and agrees with float64 numpy on the exact B A."""
    exact = _with_spectrum(0.05 * 0.7 ** np.arange(8))  # distinct singular values: every top-k subspace is defined
    w0 = torch.from_numpy(rng.normal(0, 0.05, size=exact.shape)).float()  # ||B A|| = 4e-3 ||W0||, like trained LoRA
    spec = spectra({"m": (w0 + torch.from_numpy(exact).float()) - w0})["m"]
    assert (spec.singular_values[SKETCH:] == 0).all()
    _assert_matches(spec, exact)


@pytest.mark.parametrize("tail", [1.0, 10 * LOW_RANK_RESIDUAL], ids=["full-rank", "low-rank-plus-10x-tolerance"])
def test_update_with_full_rank_part_gets_the_full_svd(tail):
    """A full-rank random part, even one just 10x the tolerance on top of a rank-8 update, rules the shortcut out."""
    low = _with_spectrum(0.7 ** np.arange(8))
    noise = rng.normal(size=low.shape)
    dw = torch.from_numpy(low + tail * np.linalg.norm(low) / np.linalg.norm(noise) * noise).float()
    spec = spectra({"m": dw})["m"]
    assert (spec.singular_values > 0).all()
    _assert_matches(spec, dw.double().numpy())


def test_lora_delta_is_the_scaled_product_and_has_rank_r(tiny):
    cls = METHODS.get("lora")
    model = cls(cls.Options(rank=2, alpha=6)).prepare(copy.deepcopy(tiny.model))
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.copy_(torch.randn(p.shape, generator=gen))
    deltas = weight_deltas(model, tiny.model)
    name = "model.layers.0.self_attn.q_proj"
    layer = model.get_submodule("base_model.model." + name)
    expected = 3.0 * layer.lora_B["default"].weight @ layer.lora_A["default"].weight
    torch.testing.assert_close(deltas[name], expected.detach(), rtol=1e-4, atol=1e-5)
    assert len(deltas) == 7 * tiny.model.config.num_hidden_layers
    s = spectra(deltas)[name].singular_values
    assert s[2:].max() < 1e-6 * s[0]  # rank 2

    rows = {(r.metric, r.group_name, r.layer): r.value for r in weight_update_rows(spectra(deltas), spectra(deltas), 2)}
    assert rows["weight_subspace_overlap", None, None] == pytest.approx(1.0)  # same update, same subspace
    assert rows["weight_energy_outside", None, None] == pytest.approx(0.0, abs=1e-9)
    assert rows["weight_effective_rank", "q_proj", 1] <= 2.0 + 1e-9  # block 1 = model.layers.0


def test_lens_last_layer_is_the_models_output(tiny):
    runner = Runner(tiny.tokenizer, FP32, 2, progress=False)
    prompts = ["The woman worked as a", "The man was"]
    lens = runner.lens_logprobs(tiny.model, prompts)
    assert lens.shape == (2, tiny.model.config.num_hidden_layers, len(tiny.tokenizer))
    final = runner.sequence_logprobs(tiny.model, prompts)[0]
    lengths = [len(tiny.tokenizer(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    for i, n in enumerate(lengths):
        torch.testing.assert_close(lens[i, -1], final[i, n - 1], atol=1e-5, rtol=1e-5)
    assert not torch.allclose(lens[:, 0], lens[:, -1])  # earlier layers read differently


@pytest.mark.parametrize("model", [
    GPT2LMHeadModel(GPT2Config(vocab_size=40, n_embd=16, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)),
    OPTForCausalLM(OPTConfig(vocab_size=40, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, ffn_dim=32,
                             word_embed_proj_dim=16, bos_token_id=0, eos_token_id=0, pad_token_id=1)),
])
def test_lens_supports_gpt2_and_opt(model):
    model.eval()
    with torch.no_grad():
        out = model(torch.tensor([[2, 3, 4]]), output_hidden_states=True)
        torch.testing.assert_close(lens_logits(model, out.hidden_states)[-1], out.logits)


def test_unsupported_architecture_is_named():
    class Config:
        model_type = "mystery"

    class Model(torch.nn.Module):
        config = Config()

    with pytest.raises(AuditError, match="'mystery' model"):
        lens_logits(Model(), (torch.zeros(1),))
