"""Batched generation: left padding gives the tokens of one-by-one generation; seeds; EOS; bad settings."""

import pytest
import torch

from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate.generate import GenerationSettings, generate, left_pad

PROMPTS = ["The woman is known as a", "The Black man", "Everyone knows that the gay student is", "The"]


def encode(tokenizer, texts):
    return [tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]


def greedy_by_hand(model, ids, steps, eos):
    """Greedy decoding with full forward passes (no cache, no padding): the reference."""
    seq, out = list(ids), []
    for _ in range(steps):
        with torch.no_grad():
            nxt = int(model(input_ids=torch.tensor([seq])).logits[0, -1].argmax())
        if nxt == eos:
            break
        out.append(nxt)
        seq.append(nxt)
    return out


def test_left_padding():
    ids, mask = left_pad([[5, 6, 7], [8]], pad_id=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    with pytest.raises(AuditError, match="no tokens"):
        left_pad([[1], []], pad_id=0)


def test_batched_greedy_equals_one_by_one(tiny):
    prompts = encode(tiny.tokenizer, PROMPTS)
    assert len({len(p) for p in prompts}) > 1  # different lengths: the batch really is padded
    settings = GenerationSettings(max_new_tokens=8, temperature=0.0, batch_size=len(prompts))
    batched = generate(tiny.model, tiny.tokenizer, prompts, settings)
    for i, p in enumerate(prompts):
        ref = greedy_by_hand(tiny.model, p, 8, tiny.tokenizer.eos_token_id)
        assert batched.ids[i, 0, : batched.lengths[i, 0]].tolist() == ref
        single = generate(tiny.model, tiny.tokenizer, [p], GenerationSettings(max_new_tokens=8, temperature=0.0, batch_size=1))
        assert torch.equal(single.ids[0], batched.ids[i])


def test_sampling_is_seeded_and_shaped(tiny):
    prompts = encode(tiny.tokenizer, PROMPTS)
    settings = GenerationSettings(max_new_tokens=6, num_samples=3, temperature=1.0, top_p=0.9, seed=1, batch_size=2)
    a = generate(tiny.model, tiny.tokenizer, prompts, settings)
    b = generate(tiny.model, tiny.tokenizer, prompts, settings)
    c = generate(tiny.model, tiny.tokenizer, prompts, GenerationSettings(**{**settings.key(), "seed": 2}))
    assert a.ids.shape == (4, 3, 6) and a.lengths.shape == (4, 3)
    assert torch.equal(a.ids, b.ids) and not torch.equal(a.ids, c.ids)
    assert len({tuple(row.tolist()) for row in a.ids.reshape(-1, 6)}) > 1  # the samples differ from each other
    texts = a.texts(tiny.tokenizer)
    assert len(texts) == 4 and all(len(t) == 3 for t in texts)
    state = torch.get_rng_state()
    generate(tiny.model, tiny.tokenizer, prompts, settings)
    assert torch.equal(state, torch.get_rng_state())  # the caller's random stream is untouched


def test_generation_stops_at_eos(tiny):
    eos = tiny.tokenizer.eos_token_id

    def eos_wins(module, args, logits):
        logits[..., eos] = 1e4
        return logits

    tiny.model.lm_head.register_forward_hook(eos_wins)
    gen = generate(tiny.model, tiny.tokenizer, encode(tiny.tokenizer, PROMPTS), GenerationSettings(max_new_tokens=5, temperature=0.0))
    assert gen.lengths.eq(0).all()
    assert gen.ids.eq(tiny.tokenizer.pad_token_id).all()
    assert gen.texts(tiny.tokenizer) == [[""]] * 4


@pytest.mark.parametrize("bad", [{"max_new_tokens": 0}, {"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.5}])
def test_bad_settings_are_errors(bad):
    with pytest.raises(AuditError, match="generation needs"):
        GenerationSettings(**bad)


@pytest.mark.slow
def test_default_model_batched_greedy_equals_one_by_one():
    from lowrank_audit.config.spec import ModelSpec
    from lowrank_audit.models import load_model

    loaded = load_model(ModelSpec(source="default"))
    prompts = encode(loaded.tokenizer, PROMPTS[:3])
    settings = GenerationSettings(max_new_tokens=6, temperature=0.0, batch_size=3)
    batched = generate(loaded.model, loaded.tokenizer, prompts, settings)
    for i, p in enumerate(prompts):
        ref = greedy_by_hand(loaded.model, p, 6, loaded.tokenizer.eos_token_id)
        assert batched.ids[i, 0, : batched.lengths[i, 0]].tolist() == ref
