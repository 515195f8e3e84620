"""The store: named migrations, one transaction per finished run, experiment identity, NaN as NULL."""

import sqlite3

import pytest

from lowrank_audit.errors import AuditError
from lowrank_audit.records import MetricRow
from lowrank_audit.store import RunRecord, Store
from lowrank_audit.store.migrations import MIGRATIONS
from lowrank_audit.store.sqlite import STORE_FILE


def run(rid="r1"):
    return RunRecord(rid, "debias", "lora", 4, 0, {"x": 1})


def test_migrations_are_recorded_once(tmp_path):
    Store.in_dir(tmp_path).close()
    store = Store.in_dir(tmp_path)
    names = [r[0] for r in store.db.execute("SELECT name FROM _migrations")]
    assert names == ["0001_initial", "0002_samples", "0003_tuning", "0004_audit_identity", "0005_cost_as_metrics"]


def test_finish_run_writes_metrics_and_status(tmp_path):
    store = Store.in_dir(tmp_path)
    store.start_run(run())
    assert store.status("r1") == "running"
    store.finish_run("r1", [MetricRow("sr", 0.5, split="train", ci_low=0.4, ci_high=0.6)], artifact="runs/r1")
    assert store.status("r1") == "finished"
    (m,) = store.metrics()
    assert (m["metric"], m["value"], m["ci_low"], m["ci_high"]) == ("sr", 0.5, 0.4, 0.6)
    assert store.runs()[0]["artifact"] == "runs/r1"


def test_cost_kept_in_old_run_columns_becomes_metric_rows_once(tmp_path):
    """0005: a store written before it kept trainable params, train seconds and peak memory as run columns, most runs
    also as metric rows. After it each number is one metric row, the columns are gone, and a value the run also had
    as a row is not doubled."""
    db = sqlite3.connect(tmp_path / STORE_FILE)
    db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at TEXT NOT NULL)")
    for name, apply in MIGRATIONS[:4]:
        apply(db)
        db.execute("INSERT INTO _migrations VALUES (?, 'then')", (name,))
    for rid, cost in (("full", (120.0, 134_515_008, 2048.0)), ("lora", (30.0, 10_000, None)), ("base", (None,) * 3)):
        db.execute("INSERT INTO runs (run_id, task, method, seed, status, config_json, train_seconds, trainable_params,"
                   " peak_rss_mb) VALUES (?, 'debias', ?, 0, 'finished', '{}', ?, ?, ?)", (rid, rid, *cost))
    db.execute("INSERT INTO metrics (run_id, metric, value) VALUES ('full', 'train_seconds', 120.0)")  # both, as sweeps wrote
    db.execute("INSERT INTO metrics (run_id, metric, split, value) VALUES ('lora', 'sr', 'train', 0.5)")
    db.commit()
    db.close()

    store = Store.in_dir(tmp_path)
    rows = sorted((m["run_id"], m["metric"], m["value"]) for m in store.metrics())
    assert rows == [("full", "peak_rss_mb", 2048.0), ("full", "train_seconds", 120.0),
                    ("full", "trainable_params", 134_515_008.0), ("lora", "sr", 0.5),
                    ("lora", "train_seconds", 30.0), ("lora", "trainable_params", 10_000.0)]
    assert not {"train_seconds", "trainable_params", "peak_rss_mb"} & set(store.runs()[0])


def test_failed_write_leaves_no_partial_rows(tmp_path):
    store = Store.in_dir(tmp_path)
    store.start_run(run())
    dup = [MetricRow("sr", 0.5, split="train"), MetricRow("sr", 0.7, split="train")]  # violates the unique key
    with pytest.raises(sqlite3.IntegrityError):
        store.finish_run("r1", dup)
    assert store.metrics() == []
    assert store.status("r1") == "running"  # a re-run retries it


def test_restart_replaces_old_rows_without_duplicates(tmp_path):
    store = Store.in_dir(tmp_path)
    store.start_run(run())
    store.finish_run("r1", [MetricRow("sr", 0.5)])
    store.start_run(run())
    store.finish_run("r1", [MetricRow("sr", 0.6)])
    assert [m["value"] for m in store.metrics()] == [0.6]
    assert len(store.runs()) == 1


def test_nan_is_stored_as_null(tmp_path):
    store = Store.in_dir(tmp_path)
    store.start_run(run())
    store.finish_run("r1", [MetricRow("sr", float("nan"), ci_low=float("inf"))])
    assert store.metric_rows("r1") == [MetricRow("sr", None)]


def test_fail_run_keeps_the_error(tmp_path):
    store = Store.in_dir(tmp_path)
    store.start_run(run())
    store.fail_run("r1", "loss became nan at step 3")
    (r,) = store.runs()
    assert r["status"] == "failed" and "step 3" in r["error"]


def test_store_of_another_experiment_is_refused(tmp_path):
    store = Store.in_dir(tmp_path)
    store.bind_experiment("aaa", "smoke on tiny")
    store.bind_experiment("aaa", "smoke on tiny")  # same experiment: fine
    with pytest.raises(AuditError, match="different experiment.*smoke on tiny.*another --out"):
        store.bind_experiment("bbb", "quick on SmolLM2")
