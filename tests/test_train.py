"""The training loop: loss only on completions, the loss goes down, NaN stops the run with its step."""

import contextlib
import copy
import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lowrank_audit.config import BudgetSpec
from lowrank_audit.methods import METHODS
from lowrank_audit.models import FP32, Precision
from lowrank_audit.records import Example
from lowrank_audit.train import TrainingDiverged, train
from lowrank_audit.train.loop import IGNORE, batches, completion_loss, encode_examples, lr_schedule

EXAMPLES = [Example("The woman worked as a", " doctor"), Example("The man worked as a", " nurse")] * 8


def method(name, **options):
    cls = METHODS.get(name)
    return cls(cls.Options(**options))


def batch_loss(model, tiny):
    ids, mask, labels = next(batches(encode_examples(EXAMPLES, tiny.tokenizer), 16, 0, tiny.tokenizer.pad_token_id))
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=mask, labels=labels).loss.item()


def test_labels_cover_only_the_completion(tiny):
    (ids, labels), = encode_examples([Example("The woman worked as a", " doctor")], tiny.tokenizer)
    assert labels[:-1] == [IGNORE] * 5 and labels[-1] == ids[-1] == tiny.tokenizer.convert_tokens_to_ids("doctor")


@pytest.mark.parametrize("name, options", [("full", {"lr": 1e-3}), ("lora", {"rank": 4, "lr": 1e-2})])
def test_a_few_steps_lower_the_loss(tiny, name, options):
    m = method(name, **options)
    model = m.prepare(copy.deepcopy(tiny.model))
    before = batch_loss(model, tiny)
    result = train(model, m, EXAMPLES, tiny.tokenizer, BudgetSpec(steps=15), FP32, seed=0, progress=False)
    assert result.steps == 15 and len(result.losses) == 15
    assert batch_loss(model, tiny) < before - 0.5
    assert result.tokens == 15 * 16 * 6


def test_same_seed_same_weights(tiny):
    outs = []
    for _ in range(2):
        m = method("lora", rank=2, lr=1e-2)
        torch.manual_seed(0)
        model = m.prepare(copy.deepcopy(tiny.model))
        train(model, m, EXAMPLES, tiny.tokenizer, BudgetSpec(steps=5), FP32, seed=0, progress=False)
        outs.append(torch.cat([p.flatten() for p in model.parameters() if p.requires_grad]))
    torch.testing.assert_close(outs[0], outs[1], rtol=0, atol=0)


def test_nan_loss_raises_with_the_step(tiny):
    m = method("full")
    model = m.prepare(copy.deepcopy(tiny.model))
    real_forward = model.forward
    calls = {"n": 0}

    def forward(*args, **kwargs):
        calls["n"] += 1
        out = real_forward(*args, **kwargs)
        if calls["n"] == 3:
            out.logits = out.logits * float("nan")
        return out

    model.forward = forward
    with pytest.raises(TrainingDiverged, match="loss became nan at step 3") as err:
        train(model, m, EXAMPLES, tiny.tokenizer, BudgetSpec(steps=5), FP32, seed=0, progress=False)
    assert err.value.step == 3


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("name, options", [("full", {"lr": 1e-3, "weight_decay": 0.01}), ("lora", {"rank": 4, "lr": 1e-2})])
def test_accelerate_loop_matches_a_plain_torch_loop(tiny, name, options, precision):
    """Training through accelerate changes no number: the same weights as AdamW + clipping + linear decay written out
    by hand.
    In bf16 that includes LoRA's frozen weights cast to bf16 once per run instead of at every call."""
    budget = BudgetSpec(steps=4, batch_size=8, max_grad_norm=0.5)
    m = method(name, **options)
    torch.manual_seed(0)
    ours = m.prepare(copy.deepcopy(tiny.model))
    train(ours, m, EXAMPLES, tiny.tokenizer, budget, Precision(precision), seed=0, progress=False)

    torch.manual_seed(0)
    plain = method(name, **options).prepare(copy.deepcopy(tiny.model))
    params = [p for p in plain.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=options["lr"], weight_decay=options.get("weight_decay", 0.0), fused=True)
    decay = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda k: 1 - k / budget.steps)  # the default: linear to 0
    data = batches(encode_examples(EXAMPLES, tiny.tokenizer), budget.batch_size, 0, tiny.tokenizer.pad_token_id)
    plain.train()
    for _ in range(budget.steps):
        ids, mask, labels = next(data)
        # bf16 on a CPU: autocast casting every weight at every call, and SDPA's math kernel for short sequences
        kernel = sdpa_kernel([SDPBackend.MATH]) if precision == "bf16" else contextlib.nullcontext()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"), kernel:
            loss = plain(input_ids=ids, attention_mask=mask, labels=labels).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, budget.max_grad_norm)
        optimizer.step()
        decay.step()
        optimizer.zero_grad(set_to_none=True)

    for (key, a), b in zip(((k, p) for k, p in ours.named_parameters() if p.requires_grad), params, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=key)
    assert "_original_forward" not in vars(ours)  # accelerate's autocast wrapper is gone after training


@pytest.mark.parametrize("name", ["full", "lora"])
def test_completion_loss_equals_the_models_own_loss(tiny, name):
    """Logits only where a completion token is predicted: the same loss as `labels=`, with ragged completions."""
    examples = [Example("The woman worked as a", " doctor"), Example("The man", " worked as a nurse"),
                Example("The person", " a doctor")]
    model = method(name, rank=4).prepare(copy.deepcopy(tiny.model)) if name == "lora" else tiny.model
    ids, mask, labels = next(batches(encode_examples(examples, tiny.tokenizer), 3, 0, tiny.tokenizer.pad_token_id))
    assert (mask == 0).any() and len({int(r.ne(IGNORE).sum()) for r in labels}) == 3  # padded, ragged completions
    with torch.no_grad():
        reference = model(input_ids=ids, attention_mask=mask, labels=labels).loss
        ours = completion_loss(model, ids, mask, labels)
    torch.testing.assert_close(ours, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name, rate", [
    ("constant", lambda k: 1.0),
    ("linear", lambda k: k / 2 if k < 2 else (10 - k) / 8),
    ("cosine", lambda k: k / 2 if k < 2 else 0.5 * (1 + math.cos(math.pi * (k - 2) / 8))),
])
def test_the_learning_rate_follows_its_schedule_and_a_resumed_schedule_carries_on(name, rate):
    """Step k trains at lr * rate(k) (2 warm-up steps of 10, the formulas of transformers' docs); a schedule made for a
    run resumed after 4 steps, on the optimizer state saved there, gives the rates the uninterrupted run had."""
    budget = BudgetSpec(steps=10, lr_schedule=name, warmup_ratio=0.2)

    def rates(optimizer, schedule, n):
        out = []
        for _ in range(n):
            out.append(optimizer.param_groups[0]["lr"])
            optimizer.param_groups[0]["params"][0].grad = torch.ones(1)
            optimizer.step()
            schedule.step()
        return out

    weight = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.AdamW([weight], lr=0.5)
    schedule = lr_schedule(optimizer, budget)
    first = rates(optimizer, schedule, 4)
    saved = copy.deepcopy(optimizer.state_dict())
    rest = rates(optimizer, schedule, 6)
    assert first + rest == pytest.approx([0.5 * rate(k) for k in range(10)], abs=1e-12)

    again = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    again.load_state_dict(saved)
    assert rates(again, lr_schedule(again, budget, done=4), 6) == rest
