"""Migration 0004: audited adapters stored before audits named them get a name, their variant and the run id a new
audit gives them, so the report shows each as its own row and a re-audit re-scores them in place."""

import json
import sqlite3

from lowrank_audit.adapter_identity import digest
from lowrank_audit.audit import Audit, AuditSpec, run_audit
from lowrank_audit.config import ModelSpec
from lowrank_audit.hashing import stable_hash
from lowrank_audit.report.data import load
from lowrank_audit.store import Store
from lowrank_audit.store.migrations import MIGRATIONS
from lowrank_audit.store.sqlite import STORE_FILE
from test_audit_identity import peft_adapter

COMMON = {"model": "tiny:abc", "precision": "fp32", "seed": 0, "task": {"name": "debias", "options": {}}}


def old_store(folder, experiment=None):
    """A store as it was before 0004: the tables of migrations 0001-0003, made by their own SQL on a bare database."""
    folder.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(folder / STORE_FILE)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    assert [name for name, _ in MIGRATIONS[:3]] == ["0001_initial", "0002_samples", "0003_tuning"]
    for name, apply in MIGRATIONS[:3]:
        apply(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'then')", (name,))
    for key, value in (experiment or {"fingerprint": "f", "description": "audit on tiny:abc (fp32)"}).items():
        db.execute("INSERT INTO experiment VALUES (?, ?)", (key, value))
    return db


def old_run(db, method, rank, audit, value, common=COMMON):
    """One finished run as the audit wrote it before 0004 (no name; id = hash of its config), a metric and a sample."""
    config = {**common, "method": {"name": method}, "audit": audit}
    rid = stable_hash(config)
    db.execute("INSERT INTO runs (run_id, task, method, rank, seed, status, config_json, artifact) "
               "VALUES (?, 'debias', ?, ?, 0, 'finished', ?, ?)", (rid, method, rank, json.dumps(config),
                                                                     audit.get("adapter")))
    db.execute("INSERT INTO metrics VALUES (?, 'group_gap', NULL, 'train', NULL, ?, NULL, NULL)", (rid, value))
    db.execute("INSERT INTO samples VALUES (?, 'eval', 'The man', ' ran', NULL, NULL, 'train', NULL)", (rid,))
    return rid


def test_old_audited_runs_get_a_name_a_variant_and_a_new_audits_id(tmp_path):
    dora = tmp_path / "dora-adapter"  # still on disk with the audited weights: its config says DoRA
    dora.mkdir()
    (dora / "adapter_model.safetensors").write_bytes(b"the audited weights")
    (dora / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "use_dora": True, "r": 2}))
    out = tmp_path / "out"
    db = old_store(out)
    base = old_run(db, "base", None, {}, 0.5)
    old_run(db, "full", None, {"reference": "/refs/full", "digest": "d0"}, 0.1)
    old_run(db, "lora", 2, {"adapter": "/runs/x/final", "digest": "d1"}, 0.2)
    old_run(db, "lora", 2, {"adapter": "/runs/y/final", "digest": "d2"}, 0.3)
    old_run(db, "lora", 4, {"adapter": "/gone/solo", "digest": "d3"}, 0.4)
    old_run(db, "lora", 4, {"adapter": "/gone/solo", "name": "solo", "digest": "d3"}, 0.41)  # its later, named audit
    old_run(db, "lora", 2, {"adapter": str(dora), "digest": digest(dora / "adapter_model.safetensors")}, 0.25)
    mitigation = {"top_k": 10, "epsilon": 0.5, "lambda": 0.75}
    old_run(db, "lora-intruders-reduced", 2, {"adapter": str(dora), "digest": digest(dora / "adapter_model.safetensors"),
                                              "intruders_reduced": mitigation}, 0.35)
    nameless = old_run(db, "lora", 8, {"digest": "d4"}, 0.45)
    db.commit()
    db.close()

    store = Store.in_dir(out)
    assert [r[0] for r in store.db.execute("SELECT name FROM _migrations")] == [name for name, _ in MIGRATIONS]
    runs = store.runs()
    assert len(runs) == 8 and len(store.metrics()) == 8 and len(store.samples()) == 8  # the older copy of solo went
    for r in runs:  # each id is the hash of its new identity, and its metric and sample came with it
        assert r["run_id"] == stable_hash(json.loads(r["config_json"]))
        assert [m["run_id"] for m in store.metrics() if m["run_id"] == r["run_id"]] == [r["run_id"]]
        assert [s["run_id"] for s in store.samples(r["run_id"])] == [r["run_id"]]
    assert base in {r["run_id"] for r in runs}  # the base's identity did not change
    reference = next(r for r in runs if r["method"] == "full")
    assert json.loads(reference["config_json"])["audit"] == {"role": "reference"}
    store.close()

    variants = {v.label: v.mean("group_gap", "train").value for v in load(out).variants("debias")}
    assert variants == {"base": 0.5, "full": 0.1, "x/final (lora) r=2": 0.2, "y/final (lora) r=2": 0.3,
                        "solo (lora) r=4": 0.41, "dora-adapter (dora) r=2": 0.25,
                        "dora-adapter (dora-intruders-reduced) r=2": 0.35, f"audited-{nameless[:8]} (lora) r=8": 0.45}
    Store.in_dir(out).close()  # recorded once: opening again changes nothing
    assert {v.label for v in load(out).variants("debias")} == set(variants)


def test_a_re_audit_of_a_migrated_adapter_rescores_it_in_place(smoke_spec, tiny, tmp_path):
    adapter = peft_adapter(tiny, tmp_path / "my-adapter")
    spec = AuditSpec(base=ModelSpec(source="tiny"), adapters=[adapter], task="debias",
                     task_options=smoke_spec.tasks[0].options)
    probe = Audit(spec, tmp_path / "probe", False)  # what this audit's runs share, as the old audit wrote it
    db = old_store(tmp_path / "out", probe.store.experiment())
    old = {old_run(db, "base", None, {}, 0.5, probe.common),
           old_run(db, "lora", 2, {"adapter": str(adapter.resolve()), "digest": digest(
               adapter / "adapter_model.safetensors")}, 0.2, probe.common)}
    db.commit()
    db.close()
    migrated = {r["run_id"] for r in Store.in_dir(tmp_path / "out").runs()}
    result = run_audit(spec, tmp_path / "out", progress=False)
    assert result.finished == 2 and result.skipped == 0  # never scored against anything: both re-scored
    runs = Store.in_dir(tmp_path / "out").runs()
    assert {r["run_id"] for r in runs} == migrated and len(migrated) == 2 and migrated != old
    assert sorted(v.label for v in load(tmp_path / "out").variants("debias")) == ["base", "my-adapter (lora) r=2"]
