"""Staying power: a sweep killed with SIGKILL resumes to the same store; one writer per output folder."""

import os
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
