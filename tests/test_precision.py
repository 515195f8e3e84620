"""bf16 on a CPU: frozen weights cast once (the same numbers as autocast), SDPA's math kernel for short training steps."""

import contextlib
import copy

import pytest
import torch
from torch import nn
from torch.profiler import ProfilerActivity, profile

from lowrank_audit.config import BudgetSpec
from lowrank_audit.methods import METHODS
from lowrank_audit.models.precision import SHORT_ATTENTION, Precision
from lowrank_audit.records import Example
from lowrank_audit.train import train

EXAMPLES = [Example("The woman worked as a", " nurse"), Example("The man worked as a", " doctor")] * 8


def lora(tiny) -> nn.Module:
    cls = METHODS.get("lora")
    model = cls(cls.Options(rank=4)).prepare(copy.deepcopy(tiny.model))
    for name, p in model.named_parameters():  # lora_B starts at zero: make the adapters matter
        if "lora_B" in name:
            nn.init.normal_(p, std=0.1)
    return model


def frozen_linears(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if type(m) is nn.Linear and not m.weight.requires_grad]


def logits(model, ids, bf16: bool) -> torch.Tensor:
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return model(input_ids=ids).logits


def test_frozen_weights_cast_once_give_autocasts_numbers(tiny):
    model = lora(tiny)
    ids = torch.randint(0, 50, (3, 7))
    reference_bf16, reference_fp32 = logits(model, ids, True), logits(model, ids, False)
    weights = {id(m): m.weight for m in frozen_linears(model)}
    assert len(weights) > 0

    with Precision("bf16").weights_cast_once(model):
        assert all("forward" in vars(m) for m in frozen_linears(model))
        assert torch.equal(logits(model, ids, True), reference_bf16)
        assert torch.equal(logits(model, ids, False), reference_fp32)  # outside autocast: the fp32 forward
        with torch.no_grad():  # the copy was made on entry: a later change of the fp32 weight is not seen under autocast
            frozen_linears(model)[0].weight.add_(1.0)
        assert torch.equal(logits(model, ids, True), reference_bf16)
        with torch.no_grad():
            frozen_linears(model)[0].weight.sub_(1.0)

    assert not any("forward" in vars(m) for m in model.modules() if isinstance(m, nn.Linear))
    assert all(m.weight is weights[id(m)] and m.weight.dtype == torch.float32 for m in frozen_linears(model))


def test_only_frozen_fp32_linears_in_bf16_on_a_cpu_are_cast(tiny):
    cls = METHODS.get("full")
    full = cls(cls.Options()).prepare(copy.deepcopy(tiny.model))  # every weight trains: nothing is frozen
    with Precision("bf16").weights_cast_once(full):
        assert not any("forward" in vars(m) for m in full.modules() if isinstance(m, nn.Linear))
    model = lora(tiny)
    with Precision("fp32").weights_cast_once(model):
        assert not any("forward" in vars(m) for m in model.modules() if isinstance(m, nn.Linear))
    with torch.device("meta"):  # stands in for a GPU: anything but the CPU is left to autocast
        elsewhere = copy.deepcopy(tiny.model).to("meta")
    with Precision("bf16").weights_cast_once(elsewhere):
        assert not any("forward" in vars(m) for m in elsewhere.modules() if isinstance(m, nn.Linear))


@pytest.mark.parametrize("precision, width, kernel", [
    ("bf16", 10, "math"), ("bf16", SHORT_ATTENTION, "math"), ("bf16", SHORT_ATTENTION + 1, "flash"), ("fp32", 10, "flash")])
def test_training_attention_kernel(precision, width, kernel):
    q = torch.randn(2, 4, width, 16, requires_grad=True)
    with Precision(precision).training_attention(torch.device("cpu"), width), \
            torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"), \
            profile(activities=[ProfilerActivity.CPU]) as prof:
        nn.functional.scaled_dot_product_attention(q, q, q, is_causal=True).sum().backward()
    names = {e.key for e in prof.key_averages()}
    assert any(kernel in name for name in names if "scaled_dot_product" in name), sorted(names)


def test_bf16_training_step_uses_the_math_kernel(tiny):
    """In the loop itself: short bf16 steps never reach the CPU flash-attention kernel; fp32 steps do."""
    cls = METHODS.get("lora")
    seen = {}
    for precision in ("bf16", "fp32"):
        m = cls(cls.Options(rank=4))
        model = m.prepare(copy.deepcopy(tiny.model))
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            train(model, m, EXAMPLES, tiny.tokenizer, BudgetSpec(steps=1, batch_size=4), Precision(precision), seed=0, progress=False)
        seen[precision] = {e.key for e in prof.key_averages() if "scaled_dot_product" in e.key}
    assert any("math" in k for k in seen["bf16"]) and not any("flash" in k for k in seen["bf16"]), seen
    assert any("flash" in k for k in seen["fp32"]), seen


def test_bf16_evaluation_and_generation_numbers_unchanged(tiny, monkeypatch):
    """The runner and sampling give, bit for bit, what autocast alone gives: casting once changes only the speed."""
    from lowrank_audit.evaluate import Runner
    from lowrank_audit.evaluate.generate import GenerationSettings, generate

    model = lora(tiny)
    prompts = ["The woman worked as a", "The Muslim student was always so", "The man"]
    prompt_ids = [tiny.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    settings = GenerationSettings(max_new_tokens=6, temperature=1.0, num_samples=2, batch_size=2, seed=3)

    def outputs():
        runner = Runner(tiny.tokenizer, Precision("bf16"), 2, progress=False)
        return (runner.next_token_logprobs(model, prompts, torch.arange(20)), runner.sequence_logprobs(model, prompts)[0],
                runner.lens_logprobs(model, prompts), generate(model, tiny.tokenizer, prompt_ids, settings, Precision("bf16")).ids)

    patched = []
    model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: patched.append("forward" in vars(module.base_layer if hasattr(module, "base_layer") else module)))
    ours = outputs()
    assert patched and all(patched)  # the output layer ran on its bf16 copy every time
    monkeypatch.setattr(Precision, "weights_cast_once", lambda *args, **kwargs: contextlib.nullcontext())
    for a, b in zip(ours, outputs(), strict=True):
        assert torch.equal(a, b)
