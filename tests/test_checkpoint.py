"""Checkpoints: a run stopped after a checkpoint resumes to exactly the weights of an uninterrupted run; a broken
checkpoint is skipped or reported, never half loaded."""

import copy

import pytest
import torch

from lowrank_audit.config import BudgetSpec
from lowrank_audit.errors import AuditError
from lowrank_audit.methods import METHODS
from lowrank_audit.models import FP32
from lowrank_audit.records import Example
from lowrank_audit.train import train

EXAMPLES = [Example("The woman worked as a", " doctor"), Example("The man worked as a", " nurse"),
            Example("The person worked as a", " teacher")] * 6
BUDGET = BudgetSpec(steps=6, batch_size=8)
EVERY, STOP = 2, 5  # checkpoints at steps 2 and 4; the interrupted run stops at step 5 and resumes from 4

CASES = {
    "full": {"lr": 1e-3},
    "lora": {"rank": 2, "lr": 1e-2, "dropout": 0.1},  # dropout draws from the torch RNG restored at step 4
    "adalora": {"rank": 4, "lr": 1e-2},  # ranks pruned at steps 1-5, fixed at 6: the allocator's scores cross step 4
    "galore": {"rank": 4, "update_interval": 3, "lr": 1e-3},  # the projection made at step 4 is used at 5 and 6
    "frugal": {"rank": 4, "update_interval": 2, "projection": "random", "lr": 1e-3},  # step 5 draws from its generator
    "lora-sb": {"rank": 2, "lr": 1e-2, "init_batches": 2},  # B and A come from `start`, which consumes batches
}


class Stop(Exception):
    """Stands for a crash in the middle of training."""


def run(tiny, name, folder=None, stop_at=None, options=None):
    """Train a fresh copy of the tiny model as the sweep does; `stop_at` raises from the step hook at that step."""
    cls = METHODS.get(name)
    method = cls(cls.Options(**(CASES[name] if options is None else options)))
    torch.manual_seed(0)
    model = method.prepare(copy.deepcopy(tiny.model))
    if stop_at is not None:
        hook = method.after_step

        def after_step(model, step):
            hook(model, step)
            if step == stop_at:
                raise Stop

        method.after_step = after_step
    result = train(model, method, EXAMPLES, tiny.tokenizer, BUDGET, FP32, seed=0, progress=False,
                   checkpoint_dir=folder, checkpoint_every=EVERY if folder else 0)
    return model, result


def assert_same(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        torch.testing.assert_close(sa[key], sb[key], rtol=0, atol=0, msg=key)


def interrupted(tiny, name, folder, stop_at=STOP):
    """Run until `stop_at` and crash there; the newest checkpoint is the one before it."""
    with pytest.raises(Stop):
        run(tiny, name, folder, stop_at=stop_at)
    assert [p.name for p in folder.iterdir()] == [f"step-{stop_at - stop_at % EVERY:08d}"]


@pytest.mark.parametrize("name", list(CASES))
def test_a_resumed_run_ends_with_the_weights_of_an_uninterrupted_one(tiny, tmp_path, name, tool_lines):
    reference, expected = run(tiny, name)
    folder = tmp_path / "checkpoint"
    interrupted(tiny, name, folder)
    resumed, result = run(tiny, name, folder)
    assert tool_lines() == ["resuming train from step 4"]
    assert_same(resumed, reference)
    assert (result.steps, result.tokens, result.losses) == (expected.steps, expected.tokens, expected.losses)
    if name == "adalora":
        assert resumed.peft_config["default"].rank_pattern == reference.peft_config["default"].rank_pattern


def test_leftover_of_an_interrupted_write_is_ignored_then_cleaned(tiny, tmp_path, tool_lines):
    reference, _ = run(tiny, "lora")
    folder = tmp_path / "checkpoint"
    interrupted(tiny, "lora", folder, stop_at=3)
    leftover = folder / ".tmp-step-00000004"  # killed while writing step 4's checkpoint
    leftover.mkdir()
    (leftover / "trainable.safetensors").write_bytes(b"half")
    resumed, _ = run(tiny, "lora", folder)
    assert tool_lines() == ["resuming train from step 2"]
    assert [p.name for p in folder.iterdir()] == ["step-00000004"]  # the new step-4 checkpoint replaced the leftover
    assert_same(resumed, reference)


@pytest.mark.parametrize("damage, reason", [
    (lambda ckpt: (ckpt / "optimizer.pt").unlink(), "missing optimizer.pt"),
    (lambda ckpt: (ckpt / "state.pt").write_bytes(b"truncated"), "it does not read back"),
    (lambda ckpt: torch.save({"state": {}, "param_groups": [], "hook": Stop()}, ckpt / "optimizer.pt"),
     "it does not read back (UnpicklingError: Weights only load failed"),
])
def test_a_damaged_checkpoint_is_skipped_with_its_reason_never_half_loaded(tiny, tmp_path, damage, reason, tool_lines):
    reference, _ = run(tiny, "lora")
    folder = tmp_path / "checkpoint"
    interrupted(tiny, "lora", folder)
    damage(folder / "step-00000004")
    again, _ = run(tiny, "lora", folder)
    logs = tool_lines()
    assert len(logs) == 1 and logs[0].startswith(f"ignoring checkpoint {folder / 'step-00000004'}: {reason}")
    assert_same(again, reference)  # trained from step 0, to the same weights


def test_a_checkpoint_of_another_model_is_skipped(tiny, tmp_path, tool_lines):
    folder = tmp_path / "checkpoint"
    interrupted(tiny, "lora", folder)
    run(tiny, "lora", folder, options={"rank": 3, "lr": 1e-2})
    logs = tool_lines()
    assert len(logs) == 1 and "lora_A.default.weight is torch.float32 (2, 64), the model's is torch.float32 (3, 64)" in logs[0]


def test_a_checkpoint_that_fails_to_restore_is_reported_with_the_fix(tiny, tmp_path):
    folder = tmp_path / "checkpoint"
    interrupted(tiny, "lora", folder)
    path = folder / "step-00000004" / "optimizer.pt"
    state = torch.load(path, weights_only=True)
    state["param_groups"][0]["params"] = state["param_groups"][0]["params"][:-1]
    torch.save(state, path)
    with pytest.raises(AuditError, match=r"could not be restored \(ValueError: .*\); delete that folder to train this run from step 0"):
        run(tiny, "lora", folder)


def test_method_state_that_is_not_plain_data_is_refused_at_save(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(METHODS.get("lora"), "state_dict", lambda self, model: {"allocator": Stop()})
    with pytest.raises(TypeError, match=r"the method's state_dict holds a Stop at \['allocator'\]"):
        run(tiny, "lora", tmp_path / "checkpoint")


def test_checkpoint_every_needs_a_folder(tiny):
    with pytest.raises(ValueError, match="checkpoint_every 2: use 0 \\(never\\), or a number of steps with a checkpoint_dir"):
        m = METHODS.get("lora")(METHODS.get("lora").Options())
        train(m.prepare(copy.deepcopy(tiny.model)), m, EXAMPLES, tiny.tokenizer, BUDGET, FP32, seed=0,
              progress=False, checkpoint_every=2)
