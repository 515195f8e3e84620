"""Weight-update geometry against numpy's SVD and hand-worked cases; the logit lens against the model."""

import copy

import numpy as np
import pytest
import torch
from transformers import GPT2Config, GPT2LMHeadModel, OPTConfig, OPTForCausalLM

from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate import Runner
from lowrank_audit.evaluate.lens import lens_logits
from lowrank_audit.evaluate.weights import spectra, weight_deltas, weight_update_rows
from lowrank_audit.methods import METHODS
from lowrank_audit.metrics import effective_rank, energy_outside_rank, subspace_overlap

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
    runner = Runner(tiny.tokenizer, "fp32", 2, progress=False)
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
