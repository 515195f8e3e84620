"""Packed training: every run of a pack ends with the weights it would have had alone; a diverging run leaves the pack."""

import copy

import pytest
import torch
from peft import get_peft_model_state_dict

from lowrank_audit.config import BudgetSpec
from lowrank_audit.methods import METHODS
from lowrank_audit.records import Example
from lowrank_audit.train import TrainingDiverged, train
from lowrank_audit.train.packed import PackMember, train_pack

# prompts of different lengths, so that runs' batches differ in width and the pack pads them
EXAMPLES = [Example("The woman worked as a", " doctor"), Example("The man worked as a", " nurse"),
            Example("The woman", " doctor"), Example("The man worked", " nurse"),
            Example("The woman worked as a doctor and the man worked as a", " nurse")] * 4
BUDGET = BudgetSpec(steps=10, batch_size=4)


def lora(**options):
    return METHODS.get("lora")(METHODS.get("lora").Options(**options))


def alone(tiny, method, seed):
    """The run trained by the normal loop, as a sweep's `train_run` trains it; its adapter weights and result."""
    torch.manual_seed(seed)
    model = method.prepare(copy.deepcopy(tiny.model))
    try:
        result = train(model, method, EXAMPLES, tiny.tokenizer, BUDGET, "fp32", seed, progress=False)
    except TrainingDiverged as e:
        return None, e
    return get_peft_model_state_dict(model), result


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


RUNS = [({"rank": 1, "lr": 1e-2}, 0), ({"rank": 4, "lr": 3e-3, "weight_decay": 0.1}, 1),
        ({"rank": 8, "lr": 5e-3, "use_rslora": True}, 2), ({"rank": 2, "lr": 2e-2, "alpha": 3.0}, 3)]


def test_a_pack_ends_with_each_runs_own_weights(tiny):
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    members = [PackMember(lora(**opts), EXAMPLES, seed) for opts, seed in RUNS]
    outcomes = train_pack(tiny.model, members, tiny.tokenizer, BUDGET, "fp32", progress=False)
    for (opts, seed), outcome in zip(RUNS, outcomes):
        weights, result = alone(tiny, lora(**opts), seed)
        packed = get_peft_model_state_dict(outcome.model)
        assert outcome.error is None and packed.keys() == weights.keys()
        for name, w in weights.items():
            assert relative(packed[name], w) < 1e-5, (opts, name)
        assert any("lora_B" in n and w.abs().max() > 0 for n, w in weights.items())  # it trained
        assert outcome.result.steps == result.steps == 10 and outcome.result.tokens == result.tokens
        torch.testing.assert_close(outcome.result.losses, result.losses, rtol=1e-5, atol=0)
    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the shared base did not move


def test_a_diverging_run_fails_with_its_step_and_the_rest_go_on(tiny):
    runs = [({"rank": 2, "lr": 1e-2}, 0), ({"rank": 4, "lr": 1e30}, 1), ({"rank": 1, "lr": 3e-3}, 2)]
    members = [PackMember(lora(**opts), EXAMPLES, seed) for opts, seed in runs]
    outcomes = train_pack(tiny.model, members, tiny.tokenizer, BUDGET, "fp32", progress=False, log=lambda _: None)
    _, diverged = alone(tiny, lora(**runs[1][0]), runs[1][1])
    assert isinstance(diverged, TrainingDiverged)
    assert outcomes[1].error is not None and outcomes[1].error.step == diverged.step
    assert str(outcomes[1].error) == str(diverged)
    for (opts, seed), outcome in zip(runs[::2], outcomes[::2]):
        weights, _ = alone(tiny, lora(**opts), seed)
        packed = get_peft_model_state_dict(outcome.model)
        assert outcome.error is None and outcome.result.steps == 10
        assert all(relative(packed[n], w) < 1e-5 for n, w in weights.items())


@pytest.mark.parametrize("name, options", [("dora", {}), ("lora", {"dropout": 0.1}), ("lora", {"init": "pissa"})])
def test_methods_a_pack_cannot_train_are_refused(tiny, name, options):
    method = METHODS.get(name)(METHODS.get(name).Options(**options))
    assert not method.packable
    with pytest.raises(Exception, match="cannot train in a pack"):
        train_pack(tiny.model, [PackMember(method, EXAMPLES, 0, "r")], tiny.tokenizer, BUDGET, "fp32", progress=False)
