"""The sweep's overall progress line: run i of n, elapsed, and time left from the mean of the runs that ended."""

from __future__ import annotations

from lowrank_audit.progress import SweepProgress, fmt_duration


def test_progress_counts_runs_and_estimates_what_is_left() -> None:
    now = [100.0]
    progress = SweepProgress(4, clock=lambda: now[0])
    assert progress.begin() == "run 1 of 4, 0:00 elapsed"  # no estimate before a run ended
    now[0] += 30.0
    progress.end()
    assert progress.begin() == "run 2 of 4, 0:30 elapsed, about 1:30 left"  # 30 s a run, 3 runs not ended
    now[0] += 90.0
    progress.end()
    assert progress.begin() == "run 3 of 4, 2:00 elapsed, about 2:00 left"  # 60 s a run, 2 not ended


def test_durations_read_as_clock_time() -> None:
    assert [fmt_duration(s) for s in (0, 59.6, 61, 3600, 3725)] == ["0:00", "1:00", "1:01", "1:00:00", "1:02:05"]
