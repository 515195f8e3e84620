"""Packed training: every run of a pack ends with the weights it would have had alone; a diverging run leaves the pack."""

import copy
import math
import re
from types import SimpleNamespace

import pytest
import torch
from peft import PeftConfig, get_peft_model_state_dict

from lowrank_audit import packing, run_step
from lowrank_audit.config import BudgetSpec
from lowrank_audit.config.spec import ExecutionSpec, MethodSpec
from lowrank_audit.methods import METHODS
from lowrank_audit.models import FP32
from lowrank_audit.records import Example
from lowrank_audit.store import Store
from lowrank_audit.sweep import run_sweep
from lowrank_audit.train import TrainingDiverged, save_trained, train
from lowrank_audit.train.packed import PackMember, train_pack
from test_sweep import results

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
        result = train(model, method, EXAMPLES, tiny.tokenizer, BUDGET, FP32, seed, progress=False)
    except TrainingDiverged as e:
        return None, e
    return get_peft_model_state_dict(model), result


def relative(a, b):
    return ((a - b).norm() / b.norm()).item()


TOLERANCE = 2e-5
"""Relative distance allowed per adapter weight after 10 fp32 steps. Not bitwise: a pack right-pads every run's batch
to the pack's widest, and attention then sums in another order (with equal widths the pack was bitwise equal here, and
so was the quick preset's LoRA family on the default model after 10 steps). The rslora run below ends 1.07e-5 away."""


RUNS = [({"rank": 1, "lr": 1e-2}, 0), ({"rank": 4, "lr": 3e-3, "weight_decay": 0.1}, 1),
        ({"rank": 8, "lr": 5e-3, "use_rslora": True}, 2), ({"rank": 2, "lr": 2e-2, "alpha": 3.0}, 3)]


def test_a_pack_ends_with_each_runs_own_weights(tiny):
    before = {k: v.clone() for k, v in tiny.model.state_dict().items()}
    members = [PackMember(lora(**opts), EXAMPLES, seed) for opts, seed in RUNS]
    outcomes = train_pack(tiny.model, members, tiny.tokenizer, BUDGET, FP32, progress=False)
    for (opts, seed), outcome in zip(RUNS, outcomes):
        weights, result = alone(tiny, lora(**opts), seed)
        packed = get_peft_model_state_dict(outcome.model)
        assert outcome.error is None and packed.keys() == weights.keys()
        for name, w in weights.items():
            assert relative(packed[name], w) < TOLERANCE, (opts, name)
        assert any("lora_B" in n and w.abs().max() > 0 for n, w in weights.items())  # it trained
        assert outcome.result.steps == result.steps == 10 and outcome.result.tokens == result.tokens
        torch.testing.assert_close(outcome.result.losses, result.losses, rtol=1e-5, atol=0)
    after = tiny.model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the shared base did not move


def test_a_diverging_run_fails_with_its_step_and_the_rest_go_on(tiny):
    runs = [({"rank": 2, "lr": 1e-2}, 0), ({"rank": 4, "lr": 1e30}, 1), ({"rank": 1, "lr": 3e-3}, 2)]
    members = [PackMember(lora(**opts), EXAMPLES, seed) for opts, seed in runs]
    outcomes = train_pack(tiny.model, members, tiny.tokenizer, BUDGET, FP32, progress=False)
    _, diverged = alone(tiny, lora(**runs[1][0]), runs[1][1])
    assert isinstance(diverged, TrainingDiverged)
    assert outcomes[1].error is not None and outcomes[1].error.step == diverged.step
    assert str(outcomes[1].error) == str(diverged)
    for (opts, seed), outcome in zip(runs[::2], outcomes[::2]):
        weights, _ = alone(tiny, lora(**opts), seed)
        packed = get_peft_model_state_dict(outcome.model)
        assert outcome.error is None and outcome.result.steps == 10
        assert all(relative(packed[n], w) < TOLERANCE for n, w in weights.items())


@pytest.mark.parametrize("name, options", [("dora", {}), ("lora", {"dropout": 0.1}), ("lora", {"init": "pissa"})])
def test_methods_a_pack_cannot_train_are_refused(tiny, name, options):
    method = METHODS.get(name)(METHODS.get(name).Options(**options))
    assert not method.packable
    with pytest.raises(Exception, match="cannot train in a pack"):
        train_pack(tiny.model, [PackMember(method, EXAMPLES, 0, "r")], tiny.tokenizer, BUDGET, FP32, progress=False)


# ---- in a sweep: packed runs are saved, evaluated, scored and stored as runs trained alone ----------------------------

def packed_spec(spec, pack=True, methods=None):
    update = {"execution": spec.execution.model_copy(update={"pack": pack})}
    if methods is not None:
        update["methods"] = [MethodSpec(**m) for m in methods]
    return spec.model_copy(update=update)


def close(a, b, rtol):
    """Two stores' non-timing metrics are the same rows, equal to `rtol` relative (NaN where both are NaN)."""
    assert a.keys() == b.keys()
    for key in a:
        for x, y in zip(a[key], b[key]):
            assert (x is None and y is None) or math.isclose(x, y, rel_tol=rtol, abs_tol=1e-9) or (x != x and y != y), key


def test_a_packed_sweep_stores_what_one_at_a_time_stores(smoke_spec, tmp_path, tool_lines):
    packed = run_sweep(packed_spec(smoke_spec), tmp_path / "packed", progress=False)
    lines = tool_lines()
    alone = run_sweep(packed_spec(smoke_spec, pack=False), tmp_path / "alone", progress=False)
    assert packed.failed == alone.failed == [] and packed.finished == alone.finished == 4
    assert sum("training 2 runs as one pack" in line for line in lines) == 1
    assert sum("evaluating the weights it trained in a pack of 2" in line for line in lines) == 2
    runs = [r for r in Store.in_dir(tmp_path / "packed").runs() if r["method"] == "lora"]
    for r in runs:  # standard PEFT folders, loadable by PEFT itself
        folder = tmp_path / "packed" / r["artifact"]
        assert PeftConfig.from_pretrained(folder).r == r["rank"] and (folder / "adapter_model.safetensors").is_file()
    close(results(tmp_path / "packed"), results(tmp_path / "alone"), rtol=1e-4)


def test_a_pack_killed_after_saving_is_evaluated_not_trained_again(smoke_spec, tmp_path, monkeypatch):
    spec = packed_spec(smoke_spec)
    run_sweep(spec, tmp_path / "clean", progress=False)
    real_measure = run_step.measure_model

    def killed(model, base, base_obs, label, *args):
        if "lora" in label:
            raise KeyboardInterrupt  # the pack has saved both runs; the process dies evaluating the first
        return real_measure(model, base, base_obs, label, *args)

    monkeypatch.setattr(run_step, "measure_model", killed)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(spec, tmp_path / "crash", progress=False)
    monkeypatch.undo()
    trained = []
    monkeypatch.setattr(packing, "train_pack", lambda *a, **k: trained.append("pack"))
    monkeypatch.setattr(run_step, "train_run", lambda *a: trained.append("alone"))
    resumed = run_sweep(spec, tmp_path / "crash", progress=False)
    assert resumed.finished == 2 and resumed.skipped == 2 and trained == []
    assert results(tmp_path / "crash") == results(tmp_path / "clean")


def test_a_run_that_diverges_in_a_pack_fails_with_its_step_and_the_others_finish(smoke_spec, tmp_path, tool_lines):
    methods = [{"name": "lora", "options": {"lr": 1e-2}, "sweep": {"rank": [1, 4]}},
               {"name": "lora", "options": {"lr": 1e30, "rank": 2}}]
    result = run_sweep(packed_spec(smoke_spec, methods=methods), tmp_path, progress=False)
    assert any("training 3 runs as one pack" in line for line in tool_lines())
    runs = {r["rank"]: r for r in Store.in_dir(tmp_path).runs() if r["method"] == "lora"}
    assert runs[2]["status"] == "failed" and re.fullmatch(r"loss became nan at step \d+; .*", runs[2]["error"])
    assert runs[1]["status"] == runs[4]["status"] == "finished" and len(result.failed) == 1


def test_packs_form_per_target_modules_up_to_the_size_limit(tmp_path):
    def job(name, i, **options):
        folder = tmp_path / str(i)
        folder.mkdir()
        return SimpleNamespace(method=METHODS.get(name)(METHODS.get(name).Options(**options)), folder=folder, spec=spec)

    spec = SimpleNamespace(execution=ExecutionSpec(pack=True, pack_size=2))
    jobs = [job("lora", 0, rank=1), job("dora", 1), job("lora", 2, rank=2, target_modules=["q_proj"]),
            job("lora", 3, rank=4), job("lora", 4, rank=8), job("lora", 5, rank=16), job("lora", 6, dropout=0.1)]
    save_trained(jobs[5].folder, {})  # trained already: evaluated, not packed
    assert packing.packs(jobs) == [[jobs[0], jobs[3]]]  # jobs[4] would be a pack of one
    spec.execution = ExecutionSpec(pack=True, pack_size=3)
    assert packing.packs(jobs) == [[jobs[0], jobs[3], jobs[4]]]
    for off in (ExecutionSpec(pack=False), ExecutionSpec(pack=True, checkpoint_every=5)):
        spec.execution = off
        assert packing.packs(jobs) == []
