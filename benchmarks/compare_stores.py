"""Whether two results stores hold the same numbers: the metric rows of the finished runs both have (same run id),
timings excluded, compared value by value (and interval by interval).

Usage: python benchmarks/compare_stores.py A/results.sqlite B/results.sqlite [--only-shared]
Without --only-shared, a run in one store only is a difference too. Exit 0 when equal, 1 otherwise.
"""

from __future__ import annotations

import argparse
import math
import sqlite3
import sys

TIMING = {"train_seconds", "seconds_per_step", "tokens_per_second", "peak_rss_mb", "eval_seconds"}


def rows(path: str) -> tuple[set[str], dict[tuple, tuple]]:
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    finished = {r[0] for r in db.execute("SELECT run_id FROM runs WHERE status = 'finished'")}
    metrics = {(r[0], r[1], r[2] or "", r[3] or "", -1 if r[4] is None else r[4]): r[5:]
               for r in db.execute("SELECT run_id, metric, group_name, split, layer, value, ci_low, ci_high FROM metrics")
               if r[0] in finished and r[1] not in TIMING}
    return finished, metrics


def same(a: float | None, b: float | None) -> bool:
    return a == b or (a is not None and b is not None and math.isnan(a) and math.isnan(b))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a")
    parser.add_argument("b")
    parser.add_argument("--only-shared", action="store_true", help="compare only the runs both stores finished")
    args = parser.parse_args()
    (runs_a, a), (runs_b, b) = rows(args.a), rows(args.b)
    shared = runs_a & runs_b
    if args.only_shared:
        a = {k: v for k, v in a.items() if k[0] in shared}
        b = {k: v for k, v in b.items() if k[0] in shared}
    only_a, only_b = a.keys() - b.keys(), b.keys() - a.keys()
    differ = [k for k in a.keys() & b.keys() if not all(same(x, y) for x, y in zip(a[k], b[k]))]
    print(f"runs: {len(runs_a)} / {len(runs_b)} finished, {len(shared)} in both; metric rows compared: "
          f"{len(a.keys() & b.keys())}; differing: {len(differ)}; only in A: {len(only_a)}; only in B: {len(only_b)}")
    for k in sorted(differ)[:10]:
        print("  differs:", k, a[k], b[k])
    for label, keys in (("only in A", only_a), ("only in B", only_b)):
        for k in sorted(keys)[:5]:
            print(f"  {label}:", k)
    return 0 if not (differ or only_a or only_b) else 1


if __name__ == "__main__":
    sys.exit(main())
