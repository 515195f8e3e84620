"""`audit` of existing adapters: reproduces what `run` stored, and refuses adapters that cannot be right."""

import copy
import os
import subprocess
import sys

import pytest

from lowrank_audit.audit import AuditSpec, run_audit
from lowrank_audit.config import ModelSpec, TinyModelSpec
from lowrank_audit.errors import AuditError
from lowrank_audit.methods import METHODS
from lowrank_audit.store import Store
from lowrank_audit.sweep import run_sweep

COST = {"trainable_params", "train_seconds", "seconds_per_step", "tokens_per_second", "peak_rss_mb",
        "final_loss", "eval_seconds", "optimizer_state_bytes"}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    from lowrank_audit.experiment import load_spec, narrow

    spec = narrow(load_spec(preset="smoke"), tasks=["debias"])
    spec = spec.model_copy(update={"execution": spec.execution.model_copy(update={"keep_full_weights": True})})
    out = tmp_path_factory.mktemp("run")
    run_sweep(spec, out, progress=False)
    runs = {(r["method"], r["rank"]): r for r in Store.in_dir(out).runs()}
    return spec, out, runs


def metrics_of(out, run_id):
    return {(m["metric"], m["group_name"], m["split"], m["layer"]): (m["value"], m["ci_low"], m["ci_high"])
            for m in Store.in_dir(out).metrics() if m["run_id"] == run_id and m["metric"] not in COST}


def audit_spec(spec, adapters, reference=None, **more):
    """The sweep's adapters were trained toward the task's own target, so shift recovered applies (task_target)."""
    return AuditSpec(base=ModelSpec(source="tiny"), adapters=adapters, reference=reference, task="debias",
                     task_options=spec.tasks[0].options, seed=0, precision=spec.precision, task_target=True, **more)


def test_audit_reproduces_the_metrics_run_stored(swept, tmp_path):
    spec, out, runs = swept
    lora = out / runs["lora", 4]["artifact"]
    full = out / runs["full", None]["artifact"]
    result = run_audit(audit_spec(spec, [lora], full), tmp_path, progress=False)
    assert result.finished == 3 and result.failed == []
    audited = {(r["method"], r["rank"]): r for r in Store.in_dir(tmp_path).runs()}
    assert set(audited) == {("base", None), ("full", None), ("lora", 4)}
    for key in audited:
        want = metrics_of(out, runs[key]["run_id"])
        got = metrics_of(tmp_path, audited[key]["run_id"])
        assert got.keys() == want.keys()
        for k in want:
            for a, b in zip(got[k], want[k]):
                assert (a is None and b is None) or a == pytest.approx(b, rel=1e-6, abs=1e-9), k
    again = run_audit(audit_spec(spec, [lora], full), tmp_path, progress=False)
    assert again.finished == 0 and again.skipped == 3


def test_adapter_for_another_base_is_refused(swept, tmp_path):
    spec, _, _ = swept
    from lowrank_audit.models import load_model
    from lowrank_audit.sweep import task_vocabulary

    other = load_model(ModelSpec(source="tiny", tiny=TinyModelSpec(hidden_size=32, intermediate_size=64)), task_vocabulary())
    method = METHODS.get("lora")(METHODS.get("lora").Options(rank=2))
    model = method.prepare(copy.deepcopy(other.model))
    for key, p in model.named_parameters():
        if "lora_B" in key:  # trained: a zero adapter is refused before its shapes are compared
            p.data.fill_(0.1)
    method.save(model, tmp_path / "adapter")
    with pytest.raises(AuditError, match="does not fit this base model"):
        run_audit(audit_spec(spec, [tmp_path / "adapter"]), tmp_path / "out", progress=False)


def test_adapter_that_changes_nothing_is_refused_by_name(swept, tmp_path, tiny):
    spec, _, _ = swept
    method = METHODS.get("lora")(METHODS.get("lora").Options(rank=2))
    method.save(method.prepare(copy.deepcopy(tiny.model)), tmp_path / "untrained")  # B = 0: no change
    with pytest.raises(AuditError, match=r"adapter .*untrained: every lora_B in adapter_model.safetensors is zero"):
        run_audit(audit_spec(spec, [tmp_path / "untrained"]), tmp_path / "out", progress=False)


def test_folder_that_is_not_an_adapter(swept, tmp_path):
    spec, _, _ = swept
    (tmp_path / "empty").mkdir()
    with pytest.raises(AuditError, match="not a PEFT adapter folder"):
        run_audit(audit_spec(spec, [tmp_path / "empty"]), tmp_path / "out", progress=False)


def test_audit_command_line(swept, tmp_path):
    spec, out, runs = swept
    lora = out / runs["lora", 1]["artifact"]
    options = [a for k, v in spec.tasks[0].options.items() for a in ("--option", f"{k}={v}")]
    proc = subprocess.run([sys.executable, "-m", "lowrank_audit", "audit", "--base", "tiny", "--adapter", str(lora),
                           "--name", "mine", "--precision", "fp32", "--out", str(tmp_path / "a"), "--no-progress",
                           *options], capture_output=True, text=True, env=dict(os.environ), timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "a" / "report.html").is_file() and "mine (lora)" in (tmp_path / "a" / "report.md").read_text()
    proc = subprocess.run([sys.executable, "-m", "lowrank_audit", "audit", "--base", "tiny", "--adapter",
                           str(tmp_path / "nope")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2 and "not a PEFT adapter folder" in proc.stderr and "Traceback" not in proc.stderr


def test_reduce_intruders_audits_peft_mitigated_adapter_beside_the_original(swept, tmp_path, tiny):
    import json

    import torch
    from peft.tuners.lora.intruders import reduce_intruder_dimension
    from safetensors.torch import save_file

    from lowrank_audit.audit import load_adapter
    from lowrank_audit.evaluate.weights import weight_deltas

    spec, out, runs = swept
    lora = out / runs["lora", 4]["artifact"]
    audit = audit_spec(spec, [lora]).model_copy(update={"reduce_intruders": True})
    result = run_audit(audit, tmp_path / "a", progress=False)
    assert result.finished == 3
    audited = {r["method"]: r for r in Store.in_dir(tmp_path / "a").runs()}
    assert set(audited) == {"base", "lora", "lora-intruders-reduced"} and audited["lora-intruders-reduced"]["rank"] == 4
    plain = metrics_of(tmp_path / "a", audited["lora"]["run_id"])
    reduced = metrics_of(tmp_path / "a", audited["lora-intruders-reduced"]["run_id"])
    assert plain.keys() == reduced.keys()
    # the mitigated update is PEFT's own, called directly on the same adapter
    direct = load_adapter(tiny.model, lora)
    reduce_intruder_dimension(direct, top_k=10, threshold_epsilon=0.5, logging_sink=None)
    norms = [float(torch.linalg.matrix_norm(dw)) for dw in weight_deltas(direct, tiny.model).values()]
    assert reduced["weight_update_norm", None, None, None][0] == pytest.approx(sum(norms) / len(norms), rel=1e-5)
    assert reduced["weight_update_norm", None, None, None][0] != pytest.approx(plain["weight_update_norm", None, None, None][0])
    assert run_audit(audit, tmp_path / "a", progress=False).skipped == 3

    (tmp_path / "ia3").mkdir()
    (tmp_path / "ia3" / "adapter_config.json").write_text(json.dumps({"peft_type": "IA3"}))
    save_file({"x": torch.zeros(1)}, tmp_path / "ia3" / "adapter_model.safetensors")  # whole: only its type is wrong
    with pytest.raises(AuditError, match="LoRA adapters only.*IA3"):
        run_audit(audit.model_copy(update={"adapters": [tmp_path / "ia3"]}), tmp_path / "b", progress=False)
