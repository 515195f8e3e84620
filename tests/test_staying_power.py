"""Staying power: a sweep killed with SIGKILL resumes to the same store; one writer per output folder."""

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from lowrank_audit.errors import AuditError
from lowrank_audit.store.lock import OutputLock

TIMING = ("train_seconds", "seconds_per_step", "tokens_per_second", "peak_rss_mb", "eval_seconds")


def sweep_cmd(out):
    return [sys.executable, "-m", "lowrank_audit", "run", "--preset", "smoke", "--task", "debias",
            "--out", str(out), "--no-progress"]


def rows(out):
    db = sqlite3.connect(out / "results.sqlite")
    marks = ",".join("?" * len(TIMING))
    metrics = db.execute(f"SELECT run_id, metric, group_name, split, layer, value, ci_low, ci_high FROM metrics "
                         f"WHERE metric NOT IN ({marks}) ORDER BY 1, 2, 3, 4, 5", TIMING).fetchall()
    runs = db.execute("SELECT run_id, status FROM runs ORDER BY 1").fetchall()
    return runs, metrics


@pytest.mark.parametrize("fraction", [0.45, 0.8])
def test_sigkill_at_any_moment_then_resume(tmp_path, fraction):
    """Kill at a share of a clean run's duration (loading, training or writing, whatever runs then)."""
    clean = tmp_path / "clean"
    start = time.perf_counter()
    assert subprocess.run(sweep_cmd(clean), capture_output=True, timeout=600).returncode == 0
    kill_after = fraction * (time.perf_counter() - start)

    out = tmp_path / "killed"
    proc = subprocess.Popen(sweep_cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(kill_after)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    if (out / "results.sqlite").exists():  # whatever is there is consistent: no metrics without a finished run
        db = sqlite3.connect(out / "results.sqlite")
        orphans = db.execute("SELECT count(*) FROM metrics JOIN runs USING (run_id) WHERE status != 'finished'")
        assert orphans.fetchone()[0] == 0
        db.close()

    resumed = subprocess.run(sweep_cmd(out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert rows(out) == rows(clean)


CHECKPOINTED = """
name: checkpointed
model: {source: tiny}
tasks:
  - name: debias
    options: {samples_per_prompt: 2, token_kl_sequences: 16, bootstrap_resamples: 200}
methods:
  - name: lora
    options: {lr: 1.0e-2, rank: 4, dropout: 0.1}
budget: {steps: 40, batch_size: 16}
precision: fp32
execution: {checkpoint_every: 4}
"""


def test_sigkill_mid_training_resumes_from_the_checkpoint(tmp_path):
    """Killed right after a training checkpoint: the re-run resumes from it, not from zero, to a clean run's numbers."""
    config = tmp_path / "sweep.yaml"
    config.write_text(CHECKPOINTED)

    def cmd(out):
        return [sys.executable, "-m", "lowrank_audit", "run", str(config), "--out", str(out), "--no-progress"]

    out = tmp_path / "killed"
    proc = subprocess.Popen(cmd(out), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while not list(out.glob("runs/*/checkpoint/step-*")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the sweep ended before its first checkpoint; raise budget.steps"

    resumed = subprocess.run(cmd(out), capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    step = re.search(r"resuming debias / lora r=4 / seed 0 from step (\d+)", resumed.stdout)
    assert step and 0 < int(step.group(1)) < 40, resumed.stdout
    assert not list(out.glob("runs/*/checkpoint"))  # removed once the run's weights were saved

    clean = tmp_path / "clean"
    assert subprocess.run(cmd(clean), capture_output=True, timeout=600).returncode == 0
    assert rows(out) == rows(clean)


def test_second_writer_is_refused(tmp_path):
    with OutputLock(tmp_path):
        with pytest.raises(AuditError, match=rf"another lowrank-audit process \(pid {os.getpid()}\) is writing"):
            with OutputLock(tmp_path):
                pass
    with OutputLock(tmp_path):  # released on exit
        pass


def test_lock_is_released_when_the_holder_is_killed(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from lowrank_audit.store.lock import OutputLock\n"
                               f"with OutputLock({str(tmp_path)!r}):\n    print('locked', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "locked"
    with pytest.raises(AuditError, match="is writing to"):
        with OutputLock(tmp_path):
            pass
    holder.kill()
    holder.wait()
    with OutputLock(tmp_path):
        pass
