"""Peak memory in use on this machine, and the most Ray worker processes alive, while a command runs.

Usage: python benchmarks/memwatch.py REPORT STOPFILE  (samples every 0.5 s until STOPFILE exists, then writes REPORT)
Memory in use is MemTotal - MemAvailable from /proc/meminfo: every process, Ray's shared object store included,
which a per-process RSS would miss. Linux only.
"""

import os
import sys
import time


def used_mb() -> float:
    info = dict(line.split(":", 1) for line in open("/proc/meminfo"))
    return (int(info["MemTotal"].split()[0]) - int(info["MemAvailable"].split()[0])) / 1024


def ray_workers() -> int:
    """Processes whose command line starts with `ray::` (Ray's task workers, idle or busy)."""
    count = 0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                count += f.read().startswith(b"ray::")
        except OSError:  # the process ended while we looked
            pass
    return count


def main(report: str, stop: str) -> None:
    before = used_mb()
    peak, workers = before, 0
    while not os.path.exists(stop):
        peak, workers = max(peak, used_mb()), max(workers, ray_workers())
        time.sleep(0.5)
    with open(report, "w") as f:
        f.write(f"memory in use: {before:.0f} MB before, peak {peak:.0f} MB; most Ray worker processes: {workers}\n")


if __name__ == "__main__":
    main(*sys.argv[1:3])
