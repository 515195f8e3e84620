"""How much the stored metrics move between two precisions: the same sweep run in fp32 and in bf16 autocast.

    lowrank-audit run quick-fp32.yaml --out /tmp/q-fp32       # the quick preset with `precision: fp32`
    lowrank-audit run --out /tmp/q-bf16                        # the quick preset (auto = bf16 on AMX CPUs)
    python benchmarks/precision_agreement.py /tmp/q-fp32 /tmp/q-bf16
For each run (method, rank, seed) and headline metric: both values, their difference, and whether the bf16 value
lies inside the fp32 run's 95% interval. Timing metrics are left out.
"""

from __future__ import annotations

import argparse
import sqlite3
from pathlib import Path

HEADLINE = ("shift_recovered", "group_gap", "kl_to_full", "drift_neutral", "target_fit")


def read(out_dir: Path) -> dict[tuple, tuple[float | None, float | None, float | None]]:
    """(method, rank, seed, metric, split) -> (value, ci_low, ci_high) of the overall rows (no group, no layer)."""
    db = sqlite3.connect(out_dir / "results.sqlite")
    marks = ",".join("?" * len(HEADLINE))
    rows = db.execute(
        f"SELECT r.method, r.rank, r.seed, m.metric, m.split, m.value, m.ci_low, m.ci_high FROM metrics m "
        f"JOIN runs r USING (run_id) WHERE m.group_name IS NULL AND m.layer IS NULL AND m.metric IN ({marks}) "
        f"AND r.status = 'finished'", HEADLINE).fetchall()
    db.close()
    return {tuple(r[:5]): tuple(r[5:]) for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, help="output folder of the fp32 sweep")
    parser.add_argument("other", type=Path, help="output folder of the bf16 sweep")
    args = parser.parse_args()
    ref, other = read(args.reference), read(args.other)
    keys = sorted(ref.keys() & other.keys(), key=lambda k: (k[0] != "base", k[0] != "full", k[1] or 0, k[3], k[4] or ""))
    print(f"{'run':10s} {'metric':16s} {'split':18s} {'fp32':>9s} {'95% CI (fp32)':>20s} {'bf16':>9s} {'diff':>8s}  inside")
    inside = total = 0
    for key in keys:
        (v, lo, hi), (w, _, _) = ref[key], other[key]
        if v is None or w is None:
            continue
        label = key[0] + (f" r={key[1]}" if key[1] is not None else "")
        has_ci = lo is not None and hi is not None
        ok = lo <= w <= hi if has_ci else None
        inside += bool(ok)
        total += has_ci
        ci = f"[{lo:.4f}, {hi:.4f}]" if has_ci else "-"
        print(f"{label:10s} {key[3]:16s} {key[4] or '-':18s} {v:9.4f} {ci:>20s} {w:9.4f} {w - v:+8.4f}  "
              f"{'-' if ok is None else 'yes' if ok else 'NO'}")
    print(f"{inside} of {total} bf16 values with an fp32 interval lie inside it; runs only in one store: "
          f"{len(ref.keys() ^ other.keys())} rows")


if __name__ == "__main__":
    main()
