"""Methods: trainable-parameter formulas, rank checks, and save/reload into an identical model."""

import copy

import pytest
import torch
from peft import PeftModel

from lowrank_audit.errors import AuditError
from lowrank_audit.methods import METHODS, trainable_parameters


def build(name, **options):
    cls = METHODS.get(name)
    return cls(cls.Options(**options))


def logits(model, tiny):
    ids = torch.tensor([tiny.tokenizer("The woman worked as a", add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        return model(input_ids=ids).logits


def perturb(model):
    """Stand-in for training: move every trainable weight, so a reload that loses anything shows."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(0.05 * torch.randn(p.shape, generator=gen))


def test_lora_trainable_parameters_follow_the_formula(tiny):
    cfg = tiny.model.config
    h, i, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * (cfg.hidden_size // cfg.num_attention_heads)
    r = 3
    shapes = [(h, h), (h, kv), (h, kv), (h, h), (h, i), (h, i), (i, h)]  # q k v o gate up down: (in, out)
    expected = cfg.num_hidden_layers * sum(r * (a + b) for a, b in shapes)
    model = build("lora", rank=r).prepare(copy.deepcopy(tiny.model))
    assert trainable_parameters(model) == expected


def test_full_trains_every_weight(tiny):
    model = build("full").prepare(copy.deepcopy(tiny.model))
    assert trainable_parameters(model) == sum(p.numel() for p in tiny.model.parameters())


def test_rank_larger_than_a_layer_is_rejected_before_training(tiny):
    kv = tiny.model.config.num_key_value_heads * (tiny.model.config.hidden_size // tiny.model.config.num_attention_heads)
    with pytest.raises(AuditError, match=rf"lora rank {kv + 1} is larger than layer .*k_proj.*at most {kv}"):
        build("lora", rank=kv + 1).check(tiny.model)
    build("lora", rank=kv).check(tiny.model)


def test_targets_that_match_nothing_are_an_error(tiny):
    with pytest.raises(AuditError, match="target_modules"):
        build("lora", target_modules=["not_a_module"]).check(tiny.model)


def test_lora_adapter_is_a_standard_peft_folder(tiny, tmp_path):
    method = build("lora", rank=2)
    model = method.prepare(copy.deepcopy(tiny.model))
    perturb(model)
    method.save(model, tmp_path)
    assert (tmp_path / "adapter_model.safetensors").is_file() and (tmp_path / "adapter_config.json").is_file()
    reloaded = PeftModel.from_pretrained(copy.deepcopy(tiny.model), tmp_path)
    torch.testing.assert_close(logits(reloaded, tiny), logits(model, tiny))
    assert not torch.allclose(logits(reloaded, tiny), logits(tiny.model, tiny))


@pytest.mark.parametrize("name, options", [("full", {}), ("lora", {"rank": 4})])
def test_save_and_load_round_trip(tiny, tmp_path, name, options):
    method = build(name, **options)
    model = method.prepare(copy.deepcopy(tiny.model))
    perturb(model)
    method.save(model, tmp_path)
    assert list(tmp_path.glob("*.safetensors"))
    assert not list(tmp_path.glob("*.bin"))
    reloaded = method.load(copy.deepcopy(tiny.model), tmp_path)
    torch.testing.assert_close(logits(reloaded, tiny), logits(model, tiny))


def test_every_registered_method_has_a_description_and_options():
    for name, cls in METHODS:
        assert cls.name == name and cls.description
        cls.Options()  # defaults are valid
