"""Wall time of short CLI commands (help, errors) for two source trees, interleaved, 3 times each: the median and min.

Usage: python benchmarks/cli_startup.py BEFORE_SRC AFTER_SRC   (each a folder holding the lowrank_audit package)
"""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

INF = "name: x\nmodel: {source: tiny}\ntasks: [{name: debias}]\nmethods: [{name: full, options: {lr: .inf}}]\nbudget: {steps: 2}\n"


def main() -> None:
    sources = {"before": sys.argv[1], "after": sys.argv[2]}
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "inf.yaml").write_text(INF)
        commands = [["--help"], ["run", "--help"], ["run", "missing.yaml"], ["run", "inf.yaml"],
                    ["audit", "--base", "default", "--task", "debias"], ["report", "nowhere"]]
        times: dict[tuple[str, str], list[float]] = {}
        for _ in range(3):
            for cmd in commands:
                for name, src in sources.items():
                    t = time.perf_counter()
                    subprocess.run([sys.executable, "-m", "lowrank_audit", *cmd], cwd=tmp, capture_output=True,
                                   env={**os.environ, "PYTHONPATH": src})
                    times.setdefault((" ".join(cmd), name), []).append(time.perf_counter() - t)
    print("| command | before, median s | after, median s | min before / after, s |\n| --- | ---: | ---: | ---: |")
    for cmd in commands:
        c = " ".join(cmd)
        b, a = times[c, "before"], times[c, "after"]
        print(f"| `lowrank-audit {c}` | {statistics.median(b):.2f} | {statistics.median(a):.2f} | "
              f"{min(b):.2f} / {min(a):.2f} |")


if __name__ == "__main__":
    main()
