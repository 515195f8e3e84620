"""`audit` of adapters trained elsewhere: each keeps its name, variant and real rank, is re-scored against a reference
given later without being observed again, and a re-run with nothing new loads nothing."""

import copy
import json

import numpy as np
import pytest
import torch
from peft import AdaLoraConfig, LoraConfig, get_peft_model

import lowrank_audit.audit as audit_module
from lowrank_audit.audit import AuditSpec, run_audit
from lowrank_audit.audit_inputs import real_rank
from lowrank_audit.config import ModelSpec
from lowrank_audit.errors import AuditError
from lowrank_audit.evaluate.weights import weight_deltas
from lowrank_audit.metrics import effective_rank
from lowrank_audit.report import build_report
from lowrank_audit.report.data import load
from lowrank_audit.store import Store

COST = {"eval_seconds"}


def peft_adapter(tiny, folder, seed=0, targets=("q_proj", "v_proj"), r=2, **options):
    """A real PEFT LoRA adapter on the tiny base with random B (so that it changes the model), saved to `folder`."""
    torch.manual_seed(seed)
    model = get_peft_model(copy.deepcopy(tiny.model), LoraConfig(r=r, target_modules=list(targets), **options))
    for key, p in model.named_parameters():
        if "lora_B" in key:
            p.data.normal_(0, 0.5)
    model.save_pretrained(folder)
    return folder


def full_reference(tiny, folder):
    """A 'full fine-tune': every weight of the base moved a little, saved as a model folder."""
    model = copy.deepcopy(tiny.model)
    torch.manual_seed(1)
    for p in model.parameters():
        p.data.add_(0.05 * torch.randn_like(p))
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def spec(smoke_spec, adapters, reference=None, **more):
    return AuditSpec(base=ModelSpec(source="tiny"), adapters=adapters, reference=reference, task="debias",
                     task_options=smoke_spec.tasks[0].options, seed=0, precision="fp32", **more)


def stored(out):
    """{(method, rank, name): {metric key: value}} of the finished runs."""
    store = Store.in_dir(out)
    metrics = store.metrics()
    out_ = {}
    for r in store.runs():
        name = json.loads(r["config_json"])["audit"].get("name")
        out_[r["method"], r["rank"], name] = {(m["metric"], m["group_name"], m["split"], m["layer"]): m["value"]
                                              for m in metrics if m["run_id"] == r["run_id"] and m["metric"] not in COST}
    return out_


def refuse_loading(monkeypatch):
    """Make every heavy load an error: what runs after this must not load the base, a reference or an adapter."""
    def refuse(*args, **kwargs):
        raise AssertionError("loaded a model")
    for name in ("load_model", "load_reference", "load_adapter"):
        monkeypatch.setattr(audit_module, name, refuse)


def test_same_method_and_rank_stay_two_named_rows_and_a_later_reference_rescores_them(smoke_spec, tiny, tmp_path,
                                                                                       monkeypatch, caplog, tool_lines):
    a = peft_adapter(tiny, tmp_path / "a", seed=0)
    b = peft_adapter(tiny, tmp_path / "b", seed=1, use_dora=True)
    c = peft_adapter(tiny, tmp_path / "c", seed=2)
    ref = full_reference(tiny, tmp_path / "ref")
    out = tmp_path / "out"
    run_audit(spec(smoke_spec, [a, c, b], names=["first", "second", "dora-one"]), out, progress=False)
    first = stored(out)
    assert set(first) == {("base", None, None), ("lora", 2, "first"), ("lora", 2, "second"), ("dora", 2, "dora-one")}
    assert all(("kl_to_full", None, None, None) not in m for m in first.values())
    assert all(("shift_recovered", None, "train", None) not in m for m in first.values())  # not the user's target

    data = load(out)
    variants = data.variants("debias")
    assert sorted(v.label for v in variants) == ["base", "dora-one (dora) r=2", "first (lora) r=2", "second (lora) r=2"]
    assert all(len(v.runs) == 1 for v in variants)  # never pooled as seeds
    report = build_report(out).markdown.read_text()
    assert "debias: mean over seeds" not in report
    for name in ("first (lora)", "second (lora)", "dora-one (dora)", "Shift recovered and target fit are not shown"):
        assert name in report

    with monkeypatch.context() as mp:  # the reference is new: only it is loaded, the adapters come from the cache
        mp.setattr(audit_module, "load_adapter", lambda *a, **k: pytest.fail("re-observed an adapter"))
        again = run_audit(spec(smoke_spec, [a, c, b], ref, names=["first", "second", "dora-one"]), out, progress=False)
    assert again.finished == 5 and again.skipped == 0  # base and the 3 adapters re-scored, the reference audited
    rescored = stored(out)
    fresh_out = tmp_path / "fresh"  # independent: the same audit with the reference from the start
    run_audit(spec(smoke_spec, [a, c, b], ref, names=["first", "second", "dora-one"]), fresh_out, progress=False)
    fresh = stored(fresh_out)
    assert rescored.keys() == fresh.keys() and len(rescored) == 5
    for key, metrics in fresh.items():
        assert rescored[key].keys() == metrics.keys(), key
        assert rescored[key] == pytest.approx(metrics, rel=1e-6, abs=1e-9), key
    assert rescored["lora", 2, "first"][("kl_to_full", None, None, None)] > 0
    assert rescored["lora", 2, "first"][("weight_subspace_overlap", None, None, None)] is not None

    caplog.clear()  # only the lines of the audits below
    refuse_loading(monkeypatch)  # nothing new, and a later audit without --reference keeps the stored one
    for reference in (ref, None):
        result = run_audit(spec(smoke_spec, [a, c, b], reference, names=["first", "second", "dora-one"]), out,
                           progress=False)
        assert result.finished == 0 and result.skipped == 5
    lines = tool_lines()
    assert all(line.startswith("nothing to do: all 5 audited models are in the store, scored against reference")
               for line in lines) and len(lines) == 2


def test_weight_means_are_over_the_adapted_modules_only(smoke_spec, tiny, tmp_path):
    folder = peft_adapter(tiny, tmp_path / "q-only", targets=("q_proj",))
    run_audit(spec(smoke_spec, [folder]), tmp_path / "out", progress=False)
    metrics = stored(tmp_path / "out")["lora", 2, "q-only"]
    deltas = weight_deltas(audit_module.load_adapter(tiny.model, folder), tiny.model)
    adapted = {k: d for k, d in deltas.items() if bool(d.any())}
    assert adapted and set(k.rsplit(".", 1)[-1] for k in adapted) == {"q_proj"} and len(deltas) > len(adapted)
    want = np.mean([effective_rank(torch.linalg.svdvals(d).numpy()) for d in adapted.values()])
    assert metrics["weight_effective_rank", None, None, None] == pytest.approx(want, rel=1e-4)
    assert metrics["weight_adapted_matrices", None, None, None] == len(adapted)
    assert {g for (m, g, _, _) in metrics if m == "weight_adapted_matrices"} == {None, "q_proj"}
    assert "q_proj (2 matrices)" in build_report(tmp_path / "out").markdown.read_text().replace(
        f"({len(adapted)} matrices)", "(2 matrices)")


def test_a_zero_adapter_is_refused_before_anything_is_loaded(smoke_spec, tiny, tmp_path, monkeypatch):
    model = get_peft_model(copy.deepcopy(tiny.model), LoraConfig(r=2, target_modules=["q_proj"]))  # B = 0: untrained
    model.save_pretrained(tmp_path / "zero")
    refuse_loading(monkeypatch)
    with pytest.raises(AuditError, match=r"^adapter .*zero: every lora_B in adapter_model.safetensors is zero, so it "
                                         r"changes nothing"):
        run_audit(spec(smoke_spec, [tmp_path / "zero"]), tmp_path / "out", progress=False)


def test_names_must_be_one_per_adapter_and_distinct(smoke_spec, tiny, tmp_path):
    a = peft_adapter(tiny, tmp_path / "x" / "adapter")
    b = peft_adapter(tiny, tmp_path / "y" / "adapter", seed=1)
    with pytest.raises(AuditError, match="two adapters are named 'adapter'.*give each a --name"):
        run_audit(spec(smoke_spec, [a, b]), tmp_path / "out", progress=False)
    with pytest.raises(AuditError, match="1 --name for 2 --adapter"):
        run_audit(spec(smoke_spec, [a, b], names=["one"]), tmp_path / "out", progress=False)


def test_an_adapter_config_naming_another_base_is_flagged(smoke_spec, tiny, tmp_path, tool_lines):
    folder = peft_adapter(tiny, tmp_path / "other")
    config = json.loads((folder / "adapter_config.json").read_text())
    (folder / "adapter_config.json").write_text(json.dumps({**config, "base_model_name_or_path": "openai/gpt2"}))
    run_audit(spec(smoke_spec, [folder]), tmp_path / "out", progress=False)
    warning = [x for x in tool_lines() if x.startswith("warning:")]
    assert len(warning) == 1 and "its config names base model 'openai/gpt2'" in warning[0]
    assert "its config names base model 'openai/gpt2'" in build_report(tmp_path / "out").markdown.read_text()


def test_adalora_is_labelled_by_its_real_rank(tiny, tmp_path):
    config = AdaLoraConfig(init_r=6, target_r=2, total_step=10, target_modules=["q_proj"])
    model = get_peft_model(copy.deepcopy(tiny.model), config)
    kept = {}
    for i, (key, p) in enumerate((k, p) for k, p in model.named_parameters() if "lora_E" in k):
        keep = 1 + i % 3  # 1..3 singular values left after pruning, per module
        p.data.zero_()
        p.data[:keep] = 1.0
        kept[key] = keep
    model.save_pretrained(tmp_path / "ada")
    from safetensors.torch import load_file

    weights = load_file(tmp_path / "ada" / "adapter_model.safetensors")
    saved = json.loads((tmp_path / "ada" / "adapter_config.json").read_text())
    assert real_rank(saved, weights) == max(kept.values()) == 2 and saved["init_r"] == 6  # not the initial r
    assert real_rank({"r": 4}, {"m.lora_A.weight": torch.ones(4, 8), "n.lora_A.weight": torch.ones(2, 8)}) == 4
