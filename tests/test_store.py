"""The store: named migrations, one transaction per finished run, experiment identity, NaN as NULL."""

import sqlite3

import pytest

from lowrank_audit.errors import AuditError
from lowrank_audit.records import MetricRow
from lowrank_audit.store import RunRecord, Store


def run(rid="r1"):
    return RunRecord(rid, "debias", "lora", 4, 0, {"x": 1})


def test_migrations_are_recorded_once(tmp_path):
    Store.in_dir(tmp_path).close()
    store = Store.in_dir(tmp_path)
    names = [r[0] for r in store.db.execute("SELECT name FROM _migrations")]
    assert names == ["0001_initial", "0002_samples", "0003_tuning", "0004_audit_identity"]


def test_finish_run_writes_metrics_and_status(tmp_path):
    store = Store.in_dir(tmp_path)
    store.start_run(run())
    assert store.status("r1") == "running"
    store.finish_run("r1", [MetricRow("sr", 0.5, split="train", ci_low=0.4, ci_high=0.6)], trainable_params=10)
    assert store.status("r1") == "finished"
    (m,) = store.metrics()
    assert (m["metric"], m["value"], m["ci_low"], m["ci_high"]) == ("sr", 0.5, 0.4, 0.6)
    assert store.runs()[0]["trainable_params"] == 10


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
