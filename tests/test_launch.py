"""Several launched processes (torchrun, as `accelerate launch` starts them) train each run together; one writes."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from launched_training import trained
from lowrank_audit.errors import AuditError
from lowrank_audit.sweep import run_sweep

HERE = Path(__file__).parent
TIMING = ("train_seconds", "seconds_per_step", "tokens_per_second", "peak_rss_mb", "eval_seconds")


def torchrun(*args: str) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *args]


def launch_env(cpu: bool = True) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    if cpu:
        env["ACCELERATE_USE_CPU"] = "1"  # what `accelerate launch --cpu` sets; without it accelerate looks for GPUs
    return env


@pytest.mark.parametrize("name", ["full", "lora"])
def test_two_processes_train_the_weights_of_one(tmp_path, name):
    """Each process takes its rows of every batch (3 and 2 of 5, with ragged completions) and weighs its loss by its
    share of the batch's completion tokens: the averaged gradients are the whole batch's, so are the weights."""
    out = tmp_path / "two.safetensors"
    proc = subprocess.run(torchrun(str(HERE / "launched_training.py"), str(out), name), env=launch_env(),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with safe_open(out, "pt") as f:
        meta = f.metadata()
    assert meta["processes"] == "2"

    weights, losses = trained(name)
    two = load_file(out)
    assert two.keys() == weights.keys()
    for key, value in weights.items():
        torch.testing.assert_close(two[key], value, rtol=0, atol=1e-5, msg=key)  # unweighted shares: off by ~7e-3
    assert json.loads(meta["losses"]) == pytest.approx(losses, rel=1e-5)


def metric_rows(out: Path) -> dict[tuple, float]:
    db = sqlite3.connect(out / "results.sqlite")
    rows = db.execute("SELECT run_id, metric, group_name, split, layer, value FROM metrics").fetchall()
    db.close()
    return {r[:5]: r[5] for r in rows if r[1] not in TIMING}


def test_a_sweep_launched_as_two_processes(tmp_path):
    """The launched sweep: the same runs and, up to float summation order, the same metrics as one process."""
    def cmd(out: Path) -> list[str]:
        return ["-m", "lowrank_audit", "run", "--preset", "smoke", "--task", "debias", "--out", str(out), "--no-progress"]

    launched = subprocess.run(torchrun(*cmd(tmp_path / "two")), env=launch_env(), capture_output=True, text=True,
                              timeout=600)
    assert launched.returncode == 0, launched.stderr[-3000:]
    assert launched.stdout.count("run(s) finished") == 1  # only the main process reports
    single = subprocess.run([sys.executable, *cmd(tmp_path / "one")], capture_output=True, text=True, timeout=600)
    assert single.returncode == 0, single.stderr[-3000:]

    two, one = metric_rows(tmp_path / "two"), metric_rows(tmp_path / "one")
    assert two.keys() == one.keys() and len(one) > 100
    for key, value in one.items():
        assert two[key] == pytest.approx(value, rel=1e-3, abs=1e-6, nan_ok=True), key
    db = sqlite3.connect(tmp_path / "two" / "results.sqlite")
    assert {s for (s,) in db.execute("SELECT status FROM runs")} == {"finished"}


@pytest.mark.parametrize("failing", [0, 1])
def test_a_process_failing_alone_ends_the_launch_and_a_rerun_resumes(tmp_path, failing):
    """The others would wait for it at their next collective until the 12-hour timeout: the launch ends at once instead,
    the finished runs stay in the store, and the next run (here in one process) does the rest."""
    out = tmp_path / "out"
    launch = subprocess.Popen(torchrun(str(HERE / "launched_failure.py"), str(out)), env=launch_env() | {
        "FAIL_PROCESS": str(failing)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, stderr = launch.communicate(timeout=240)
    except subprocess.TimeoutExpired:  # the hang this guards against: stop the launcher and the processes it started
        os.killpg(launch.pid, signal.SIGKILL)
        launch.communicate()
        pytest.fail("the launch still ran after 240 s: the other process is waiting for the failed one")
    assert launch.returncode != 0
    assert (f"LaunchBroken: process {failing} of 2 failed while training debias / lora r=1 / seed 0: RuntimeError: out "
            f"of memory in process {failing}. The processes of a launch train each run together") in stderr
    db = sqlite3.connect(out / "results.sqlite")
    assert dict(((m, r), s) for m, r, s in db.execute("SELECT method, rank, status FROM runs")) == {
        ("full", None): "finished", ("base", None): "finished", ("lora", 1): "running"}
    db.close()
    rerun = subprocess.run([sys.executable, "-m", "lowrank_audit", "run", "--preset", "smoke", "--task", "debias", "--out",
                            str(out), "--no-progress"], capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "2 run(s) finished, 2 already in the store, 0 failed" in rerun.stdout


def test_processes_launched_without_the_cpu_flag_are_told_how(tmp_path):
    """On a machine without GPUs, accelerate sees one process unless told to use CPUs; each process says so."""
    proc = subprocess.run(torchrun("-m", "lowrank_audit", "run", "--preset", "smoke", "--task", "debias", "--out",
                                   str(tmp_path / "out"), "--no-progress"),
                          env=launch_env(cpu=False), capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    assert proc.stderr.count("set ACCELERATE_USE_CPU=1") == 2, proc.stderr[-3000:]
    assert not (tmp_path / "out" / "results.sqlite").exists()


def test_a_launched_sweep_refuses_a_remote_executor(smoke_spec, tmp_path, monkeypatch):
    """Ray runs each run elsewhere; under a launcher every process must train the same run: a clear error, not a hang."""
    class TwoProcesses:
        num_processes, is_main_process = 2, True

    announced = []
    monkeypatch.setattr("lowrank_audit.sweep.launch_state", lambda: TwoProcesses())
    monkeypatch.setattr("lowrank_audit.executors.launched.announce", announced.append)
    spec = smoke_spec.model_copy(update={"execution": smoke_spec.execution.model_copy(update={"executor": "ray"})})
    with pytest.raises(AuditError, match="executor 'ray' runs each run elsewhere"):
        run_sweep(spec, tmp_path, progress=False)
    assert announced == [None]  # the other processes are told to stop waiting
    assert not (tmp_path / "results.sqlite").exists()
