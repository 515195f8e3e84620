"""Bad inputs, interrupts and full disks: one line naming the problem and the fix, exit code 2 (130 for Ctrl-C, 1 for
a sweep whose runs failed), and nothing the output folder held before is lost or changed."""

import contextlib
import copy
import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import save_file

import lowrank_audit
from lowrank_audit.audit import AuditSpec, method_name, run_audit
from lowrank_audit.config import ModelSpec
from lowrank_audit.experiment import load_spec, narrow
from lowrank_audit.methods import METHODS
from lowrank_audit.models.default import MANIFEST, _manifest, cache_damage
from lowrank_audit.records import MetricRow
from lowrank_audit.store import RunRecord, Store
from lowrank_audit.store.lock import LOCK_FILE
from lowrank_audit.sweep import run_sweep

from test_sweep import tmpfs


SOURCE = str(Path(lowrank_audit.__file__).parents[1])  # the subprocesses import the lowrank_audit these tests do


def env():
    return {**os.environ, "PYTHONPATH": os.pathsep.join([SOURCE, os.environ.get("PYTHONPATH", "")])}


def cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "lowrank_audit", *args], capture_output=True, text=True, cwd=cwd,
                          env=env(), timeout=600)


def cli_here(capsys, *args):
    """The command in this process, for a test that patches the library: its exit code and output as `cli` gives them."""
    from lowrank_audit.cli import main

    capsys.readouterr()  # what the test printed before
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["lowrank-audit", *args])
        with pytest.raises(SystemExit) as exit_:
            main()
    captured = capsys.readouterr()
    return SimpleNamespace(returncode=exit_.value.code, stdout=captured.out, stderr=captured.err)


def snapshot(folder):
    """Every file under `folder` with its SHA-256, but the lock file a refused command may leave and SQLite's -shm file
    (an index of the -wal file that SQLite rebuilds whenever the store is opened; it holds no data)."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != LOCK_FILE and not p.name.endswith("-shm")}


def assert_one_line(proc, message, code=2):
    assert proc.returncode == code, proc.stderr
    lines = proc.stderr.strip("\n").splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert message in lines[0], lines[0]


@pytest.fixture()
def out(tmp_path):
    """An output folder that already holds something the refused command must leave as it is."""
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "notes.txt").write_text("kept")
    return folder


def a_store(folder):
    """A store with one finished run and its metrics, written the way a sweep writes it."""
    store = Store.in_dir(folder)
    store.bind_experiment("f" * 16, "an experiment")
    store.start_run(RunRecord("r1", "debias", "lora", 4, 0, {"x": 1}))
    store.finish_run("r1", [MetricRow("target_fit", 0.5)])
    store.close()


# ---- the command line ---------------------------------------------------------------------------------------------
def write(path, data):
    path.write_bytes(data) if isinstance(data, bytes) else path.write_text(data)
    return path


TINY = "name: x\nmodel: {source: tiny}\ntasks: [{name: debias}]\nbudget: {steps: 2}\n"


@pytest.mark.parametrize("name, content, message", [
    ("binary.yaml", b"\x00\x01\xff\xfe\x89PNG", "is not a text file (byte 2 is not UTF-8)"),
    ("c" * 240 + ".yaml", None, "does not exist"),  # a 245-character name: the message stays on the error line
    ("c" * 300 + ".yaml", None, "File name too long"),
    ("inf.yaml", TINY + "methods: [{name: full, options: {lr: .inf}}]\n", "methods[0].lr: Input should be a finite number"),
])
def test_bad_config_files(tmp_path, out, name, content, message):
    config = write(tmp_path / name, content) if content is not None else tmp_path / name
    before = snapshot(out)
    assert_one_line(cli("run", str(config), "--out", str(out), cwd=tmp_path), message)
    assert snapshot(out) == before


def test_an_infinite_learning_rate_from_a_sweep_key_is_refused(tmp_path, out):
    config = write(tmp_path / "c.yaml", TINY + "methods: [{name: lora, options: {lr: -.inf}, sweep: {rank: [1]}}]\n")
    assert_one_line(cli("run", str(config), "--out", str(out), cwd=tmp_path), "Input should be a finite number")


@pytest.mark.parametrize("args, message", [
    (["audit", "--base", "default", "--task", "debias"], "Missing option '--adapter'. See '"),
    (["report"], "Missing argument"),
    (["run", "--bogus"], "No such option: --bogus"),
    (["run", "--preset"], "Option '--preset' requires an argument"),
    (["audit", "--adapter", "a", "--base", ""], "--base is empty: give 'default', a hub id or a local model folder"),
    (["audit", "--adapter", "a", "--precision", "fp16"], "command line: precision: Input should be 'auto', 'fp32' or 'bf16'"),
])
def test_command_line_mistakes(tmp_path, out, args, message):
    before = snapshot(tmp_path)
    assert_one_line(cli(*args, cwd=tmp_path), message)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_or_sigterm_prints_interrupted_and_exits_128_plus_signal(tmp_path, sig, code):
    """Ctrl-C and SIGTERM (`kill`, `timeout`, a scheduler) stop a sweep the same way: one line, exit 128 + signal."""
    proc = subprocess.Popen([sys.executable, "-m", "lowrank_audit", "run", "--preset", "smoke", "--task", "debias",
                             "--out", str(tmp_path / "out"), "--no-progress"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**env(), "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # a shell's `&` ignores it
    for line in proc.stdout:
        if line.startswith("run debias / full"):  # inside the sweep: the full fine-tune is training
            break
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == code
    assert err.strip().splitlines() == ["interrupted; finished runs are in the store, re-run the same command to resume."]


def test_a_sweep_whose_run_failed_exits_1(tmp_path):
    config = write(tmp_path / "c.yaml", TINY + "methods: [{name: lora, options: {lr: 1.0e+30}, sweep: {rank: [2]}}]\n")
    proc = cli("run", str(config), "--out", str(tmp_path / "out"), "--no-progress", cwd=tmp_path)
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "1 run(s) failed (errors are in the report); re-run the same command to retry them."]
    runs = {r["method"]: r for r in Store.in_dir(tmp_path / "out").runs()}
    assert runs["lora"]["status"] == "failed" and "loss became" in runs["lora"]["error"]
    assert (tmp_path / "out" / "report.html").is_file()


# ---- a damaged store ----------------------------------------------------------------------------------------------
def test_a_store_of_random_bytes_is_refused_and_left_as_it_is(tmp_path, out):
    (out / "results.sqlite").write_bytes(os.urandom(8192))
    before = snapshot(out)
    assert_one_line(cli("report", str(out), cwd=tmp_path), f"the results store {out / 'results.sqlite'} is damaged "
                    "(file is not a database); it is left as it is. Restore it from a backup, or choose a new --out")
    assert_one_line(cli("run", "--preset", "smoke", "--task", "debias", "--out", str(out), cwd=tmp_path), "is damaged")
    assert snapshot(out) == before


def drop(folder, table):
    """Drop a table the way a user's sqlite3 session would, closed afterwards (SQLite then folds its WAL into the file)."""
    with contextlib.closing(sqlite3.connect(folder / "results.sqlite")) as db:
        db.execute(f"DROP TABLE {table}")
        db.commit()


@pytest.mark.parametrize("table", ["runs", "metrics", "samples", "experiment", "_migrations"])
def test_a_store_with_a_dropped_table_is_refused_and_left_as_it_is(out, table, capsys):
    a_store(out)
    drop(out, table)
    before = snapshot(out)
    assert_one_line(cli_here(capsys, "report", str(out)), f"the results store {out / 'results.sqlite'} is damaged "
                    f"(table {table} missing); it is left as it is. Restore it from a backup, or choose a new --out")
    assert snapshot(out) == before


def test_run_and_report_refuse_a_store_without_its_metrics_table(tmp_path, out):
    run_sweep(narrow(load_spec(preset="smoke"), tasks=["debias"], methods=["lora"]), out, progress=False)
    drop(out, "metrics")
    before = snapshot(out)
    for args in (["run", "--preset", "smoke", "--task", "debias", "--method", "lora", "--out", str(out)],
                 ["report", str(out)]):
        assert_one_line(cli(*args, cwd=tmp_path), "is damaged (table metrics missing)")  # never "all finished"
    assert snapshot(out) == before


# ---- a full disk (a real small tmpfs) -----------------------------------------------------------------------------
def fill(folder):
    """Take every free byte of `folder`'s file system."""
    with open(folder / "filler", "wb", buffering=0) as f:  # unbuffered: nothing left to write when it closes
        for size in (1 << 20, 1 << 12, 1):
            try:
                while True:
                    f.write(b"\0" * size)
            except OSError:
                pass
    return folder / "filler"


def test_weights_that_meet_a_full_disk_fail_their_run_and_the_rerun_resumes(tmp_path):
    spec = narrow(load_spec(preset="smoke"), tasks=["debias"])
    out = tmp_path / "out"
    out.mkdir()
    with tmpfs(out / "runs", "size=1m") as disk:  # the weights' disk is full, the store's is not
        filler = fill(disk)
        result = run_sweep(spec, out, progress=False)
        assert len(result.failed) == 3 and all(e.startswith("no space left on device") for _, e in result.failed)
        assert {r["method"]: r["status"] for r in Store.in_dir(out).runs()} == {
            "base": "finished", "full": "failed", "lora": "failed"}
        filler.unlink()
        again = run_sweep(spec, out, progress=False)
        assert again.failed == [] and again.finished == 3 and again.skipped == 1
        assert {r["status"] for r in Store.in_dir(out).runs()} == {"finished"}


def test_a_failure_write_that_meets_a_full_disk_is_one_error_and_the_store_stays_whole(tmp_path, monkeypatch, capsys):
    import lowrank_audit.run_step as run_step

    real_train = run_step.train
    filled = []

    def fills_the_disk(*args, **kwargs):
        trained = real_train(*args, **kwargs)
        filled.append(fill(disk / "out"))  # the weights, then the failure, meet a full disk
        return trained

    monkeypatch.setattr(run_step, "train", fills_the_disk)
    with tmpfs(tmp_path / "disk", "size=24m") as disk:
        args = ("run", "--preset", "smoke", "--task", "debias", "--method", "full", "--out", str(disk / "out"),
                "--no-progress")
        proc = cli_here(capsys, *args)
        assert_one_line(proc, f"could not write the results store {disk / 'out' / 'results.sqlite'}: database or disk "
                              "is full. Free some space")
        assert "re-run the same command" in proc.stderr
        filled[0].unlink()
        assert {r["method"]: r["status"] for r in Store.in_dir(disk / "out").runs()} == {"full": "running"}
        monkeypatch.setattr(run_step, "train", real_train)
        assert cli_here(capsys, *args).returncode == 0
        assert {r["status"] for r in Store.in_dir(disk / "out").runs()} == {"finished"}


# ---- adapters and models ------------------------------------------------------------------------------------------
def audit_spec(adapters, reference=None):
    spec = narrow(load_spec(preset="smoke"), tasks=["debias"])
    return AuditSpec(base=ModelSpec(source="tiny"), adapters=adapters, reference=reference, task="debias",
                     task_options=spec.tasks[0].options, seed=0, precision="fp32")


def trained_adapter(tiny, folder, name="lora", **options):
    """An adapter of `name` whose B matrices are random (so that it changes the model), saved as a PEFT folder."""
    method = METHODS.get(name)(METHODS.get(name).Options(rank=2, **options))
    model = method.prepare(copy.deepcopy(tiny.model))
    torch.manual_seed(0)
    for key, p in model.named_parameters():
        if "lora_B" in key:
            p.data.normal_(0, 0.5)
    method.save(model, folder)
    return folder


@pytest.mark.parametrize("cut", [4, 100, -50])
def test_a_truncated_adapter_is_refused_by_name(tiny, tmp_path, out, cut):
    folder = trained_adapter(tiny, tmp_path / "adapter")
    weights = folder / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:cut])
    before = snapshot(out)
    assert_one_line(cli("audit", "--base", "tiny", "--adapter", str(folder), "--out", str(out), cwd=tmp_path),
                    f"{weights} is damaged or truncated (Error while deserializing header")
    assert snapshot(out) == before


def test_a_full_model_passed_as_an_adapter_is_pointed_to_reference(tmp_path, out):
    folder = tmp_path / "full-model"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    save_file({"w": torch.zeros(2)}, str(folder / "model.safetensors"))
    before = snapshot(out)
    assert_one_line(cli("audit", "--base", "tiny", "--adapter", str(folder), "--out", str(out), cwd=tmp_path),
                    "looks like a full model (config.json and safetensors weights, no adapter_config.json), not a "
                    "PEFT adapter: pass a full fine-tune as --reference")
    assert snapshot(out) == before


def test_a_model_folder_that_needs_its_own_code_is_refused_without_running_it(tmp_path, out):
    folder = tmp_path / "remote"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "made_up", "auto_map": {
        "AutoConfig": "code.Config", "AutoModelForCausalLM": "code.Model"}}))
    (folder / "code.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w')\n")
    config = write(tmp_path / "c.yaml", f"name: x\nmodel: {{source: hf, path: {folder}}}\ntasks: [{{name: debias}}]\n"
                                        "methods: [{name: full}]\nbudget: {steps: 2}\n")
    before = snapshot(out)
    assert_one_line(cli("run", str(config), "--out", str(out), cwd=tmp_path),
                    f"model folder {folder} needs its own Python code (config.json has an auto_map for model_type "
                    "'made_up'); lowrank-audit never runs a model's code")
    assert not (tmp_path / "ran").exists() and snapshot(out) == before


@pytest.mark.parametrize("config, name", [
    ({"peft_type": "LORA"}, "lora"),
    ({"peft_type": "LORA", "use_dora": True}, "dora"),
    ({"peft_type": "LORA", "use_rslora": True, "init_lora_weights": "olora"}, "lora+rslora+olora"),
    ({"peft_type": "LORA", "use_dora": True, "init_lora_weights": "pissa_niter_4"}, "dora+pissa"),
    ({"peft_type": "LORA", "init_lora_weights": False}, "lora"),
    ({"peft_type": "IA3"}, "ia3"),
])
def test_method_names_say_the_lora_variant(config, name):
    assert method_name(config) == name


def test_an_audited_dora_adapter_is_not_recorded_as_lora(tiny, tmp_path):
    lora = trained_adapter(tiny, tmp_path / "lora")
    dora = trained_adapter(tiny, tmp_path / "dora", name="dora")
    assert json.loads((dora / "adapter_config.json").read_text())["use_dora"] is True
    run_audit(audit_spec([lora, dora]), tmp_path / "out", progress=False)
    assert sorted((r["method"], r["rank"]) for r in Store.in_dir(tmp_path / "out").runs()) == [
        ("base", None), ("dora", 2), ("lora", 2)]


# ---- data and caches ----------------------------------------------------------------------------------------------
def test_a_saved_dataset_with_an_empty_split_is_refused(tmp_path, out, capsys):
    import datasets

    train = datasets.Dataset.from_dict({"text": ["a b", "c d"], "label": ["good", "bad"], "group": ["x", "y"]})
    datasets.DatasetDict({"train": train, "test": train.select([])}).save_to_disk(str(tmp_path / "saved"))
    config = write(tmp_path / "c.yaml", "name: x\nmodel: {source: tiny}\nmethods: [{name: full}]\nbudget: {steps: 2}\n"
                                        f"tasks: [{{name: classification, options: {{data: {tmp_path / 'saved'}}}}}]\n")
    before = snapshot(out)
    assert_one_line(cli_here(capsys, "run", str(config), "--out", str(out), "--no-progress"),
                    f"saved dataset {str(tmp_path / 'saved')!r} has a split with no rows, which datasets cannot load "
                    "back. Give every split rows (or drop the empty one) and save it again.")
    assert {name: digest for name, digest in snapshot(out).items() if name in before} == before


def test_a_damaged_model_cache_entry_is_found(tmp_path):
    folder = tmp_path / "entry"
    folder.mkdir()
    (folder / "model.safetensors").write_bytes(b"w" * 1000)
    (folder / "config.json").write_text("{}")
    (folder / MANIFEST).write_text(json.dumps(_manifest(folder)))
    assert cache_damage(folder) is None
    (folder / "model.safetensors").write_bytes(b"w" * 999 + b"x")  # same size, other bytes
    assert cache_damage(folder) == "model.safetensors does not match its SHA-256"
    (folder / "model.safetensors").write_bytes(b"w" * 10)  # truncated
    assert cache_damage(folder) == "model.safetensors is 10 bytes, not 1,000"
    (folder / "config.json").unlink()
    (folder / "model.safetensors").write_bytes(b"w" * 1000)
    assert cache_damage(folder) == "config.json missing"
    (folder / MANIFEST).unlink()
    assert cache_damage(folder) == f"no readable {MANIFEST}"


@pytest.mark.slow
def test_a_damaged_default_model_cache_is_rebuilt(tmp_path, monkeypatch):
    from lowrank_audit.models import default

    monkeypatch.setenv("LOWRANK_AUDIT_HOME", str(tmp_path))
    first, _ = default.load_default()
    cached = default.cache_dir(default.gguf_path())
    weights = cached / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    with pytest.warns(UserWarning, match=r"is damaged \(model.safetensors is .* bytes, not .*\); rebuilding it"):
        again, _ = default.load_default()
    assert default.cache_damage(cached) is None
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
