"""How much the stored metrics move between two precisions: the same sweep run in fp32 and in bf16 autocast.

    lowrank-audit run --out /tmp/q-fp32 --precision fp32       # the quick preset
    lowrank-audit run --out /tmp/q-bf16 --precision bf16
    python benchmarks/precision_agreement.py /tmp/q-fp32 /tmp/q-bf16
For each run (method, rank, seed) and headline metric: both values, their difference, and whether the bf16 value
lies inside the fp32 run's 95% interval (a bootstrap over prompts). Timing metrics are left out.

    python benchmarks/precision_agreement.py --fp32 /tmp/q-fp32 /tmp/s12-fp32 --bf16 /tmp/q-bf16 /tmp/s12-bf16
Several stores per precision (e.g. other seeds of the same sweep) are pooled by (method, rank, metric, split).
Why: bf16 changes the gradients, so a trained model differs between precisions the way it differs between seeds,
and a prompt interval covers neither. Per run and metric: the fp32 mean over seeds with a 95% Student-t interval
across seeds, the bf16 mean, and whether the bf16 mean lies inside that interval (not judged when the fp32 values do
not vary with the seed, e.g. the base model). Summary per metric over the trained runs: the median |fp32 - bf16| at
equal seed against the median |seed a - seed b| within one precision, i.e. precision against training noise.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sqlite3
from collections import defaultdict
from pathlib import Path
from statistics import mean, median, stdev

from scipy import stats

HEADLINE = ("shift_recovered", "group_gap", "kl_to_full", "drift_neutral", "target_fit")
Key = tuple  # (method, rank, seed, metric, split); pooled: (method, rank, metric, split)


def read(out_dir: Path) -> dict[Key, tuple[float | None, float | None, float | None]]:
    """(method, rank, seed, metric, split) -> (value, ci_low, ci_high) of the overall rows (no group, no layer)."""
    db = sqlite3.connect(out_dir / "results.sqlite")
    marks = ",".join("?" * len(HEADLINE))
    rows = db.execute(
        f"SELECT r.method, r.rank, r.seed, m.metric, m.split, m.value, m.ci_low, m.ci_high FROM metrics m "
        f"JOIN runs r USING (run_id) WHERE m.group_name IS NULL AND m.layer IS NULL AND m.metric IN ({marks}) "
        f"AND r.status = 'finished'", HEADLINE).fetchall()
    db.close()
    return {tuple(r[:5]): tuple(r[5:]) for r in rows}


def configs(out_dir: Path) -> dict[tuple, str]:
    """(method, rank, seed) -> the finished run's config without seed and precision (what must match to pool)."""
    db = sqlite3.connect(out_dir / "results.sqlite")
    rows = db.execute("SELECT method, rank, seed, config_json FROM runs WHERE status = 'finished'").fetchall()
    db.close()
    return {(m, r, s): json.dumps({k: v for k, v in json.loads(c).items() if k not in ("seed", "precision")},
                                  sort_keys=True) for m, r, s, c in rows}


def order(key: Key) -> tuple:
    return key[0] != "base", key[0] != "full", key[1] or 0, *(str(k) for k in key[2:])


def label(method: str, rank: int | None) -> str:
    return method + (f" r={rank}" if rank is not None else "")


def compare_two(reference: Path, other: Path) -> None:
    """One store per precision: each bf16 value against the fp32 run's own (prompt-bootstrap) interval."""
    ref, oth = read(reference), read(other)
    keys = sorted(ref.keys() & oth.keys(), key=order)
    print(f"{'run':10s} {'metric':16s} {'split':18s} {'fp32':>9s} {'95% CI (fp32)':>20s} {'bf16':>9s} {'diff':>8s}  inside")
    inside = total = 0
    for key in keys:
        (v, lo, hi), (w, _, _) = ref[key], oth[key]
        if v is None or w is None:
            continue
        has_ci = lo is not None and hi is not None
        ok = lo <= w <= hi if has_ci else None
        inside += bool(ok)
        total += has_ci
        ci = f"[{lo:.4f}, {hi:.4f}]" if has_ci else "-"
        print(f"{label(*key[:2]):10s} {key[3]:16s} {key[4] or '-':18s} {v:9.4f} {ci:>20s} {w:9.4f} {w - v:+8.4f}  "
              f"{'-' if ok is None else 'yes' if ok else 'NO'}")
    print(f"{inside} of {total} bf16 values with an fp32 interval lie inside it; runs only in one store: "
          f"{len(ref.keys() ^ oth.keys())} rows")


def pool(dirs: list[Path]) -> dict[Key, dict[int, float]]:
    """(method, rank, metric, split) -> {seed: value}; a seed found in two stores is an error."""
    pooled: dict[Key, dict[int, float]] = defaultdict(dict)
    for d in dirs:
        for (method, rank, seed, metric, split), (value, _, _) in read(d).items():
            key = (method, rank, metric, split)
            if seed in pooled[key]:
                raise SystemExit(f"{d}: seed {seed} of {label(method, rank)} is in another store too")
            if value is not None:
                pooled[key][seed] = value
    return pooled


def check_configs(dirs: list[Path]) -> None:
    """Say which runs were made with another config (other than seed and precision) than the rest."""
    seen: dict[tuple, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for d in dirs:
        for (method, rank, seed), config in configs(d).items():
            seen[(method, rank)][config].append(f"{d} seed {seed}")
    for (method, rank), variants in seen.items():
        if len(variants) > 1:
            print(f"WARNING: {label(method, rank)} was run with {len(variants)} different configs: "
                  + " | ".join(", ".join(where) for where in variants.values()))
    if all(len(v) == 1 for v in seen.values()):
        print(f"configs: every (method, rank) has one config (apart from seed and precision) in all {len(dirs)} stores")


def t_interval(x: list[float]) -> tuple[float, float]:
    """95% Student-t interval of the mean across seeds (as the report's seed aggregate)."""
    half = float(stats.t.ppf(0.975, len(x) - 1)) * stdev(x) / len(x) ** 0.5
    return mean(x) - half, mean(x) + half


def compare_pooled(fp32_dirs: list[Path], bf16_dirs: list[Path]) -> None:
    check_configs(fp32_dirs + bf16_dirs)
    ref, oth = pool(fp32_dirs), pool(bf16_dirs)
    keys = sorted(ref.keys() & oth.keys(), key=order)
    print(f"{'run':10s} {'metric':16s} {'split':18s} {'n':>3s} {'fp32 mean':>9s} {'95% t-interval (fp32)':>22s} "
          f"{'bf16 mean':>9s} {'diff':>8s}  inside")
    per_run: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # inside, judged, not judged (no seed variation)
    for key in keys:
        a, b = ref[key], oth[key]
        if len(a) < 2 or not b:
            continue
        x = list(a.values())
        varies = max(x) > min(x)
        lo, hi = t_interval(x)
        m, w = mean(x), mean(b.values())
        ok = lo <= w <= hi if varies else None
        counts = per_run[label(*key[:2])]
        counts[0] += bool(ok)
        counts[1] += varies
        counts[2] += not varies
        print(f"{label(*key[:2]):10s} {key[2]:16s} {key[3] or '-':18s} {len(x):3d} {m:9.4f} "
              f"{f'[{lo:.4f}, {hi:.4f}]':>22s} {w:9.4f} {w - m:+8.4f}  {'-' if ok is None else 'yes' if ok else 'NO'}")
    print("\nper run: bf16 mean inside the fp32 across-seed interval (not judged: fp32 identical at every seed)")
    for run, (inside, judged, skipped) in per_run.items():
        print(f"  {run:10s} {inside:3d} of {judged:3d}" + (f"  (+{skipped} not judged)" if skipped else ""))
    print(f"  {'all':10s} {sum(c[0] for c in per_run.values()):3d} of {sum(c[1] for c in per_run.values()):3d}")

    print("\ntrained runs, per metric (all splits; rows judged above): median |difference| (pairs)")
    print(f"  {'metric':16s} {'fp32-bf16, same seed':>22s} {'fp32 seed a-b':>16s} {'bf16 seed a-b':>16s}")
    for metric in HEADLINE:
        trained = [k for k in keys if k[2] == metric and k[0] != "base" and len(set(ref[k].values())) > 1]
        cross = [abs(ref[k][s] - oth[k][s]) for k in trained for s in ref[k].keys() & oth[k].keys()]
        within = [[abs(p[k][s] - p[k][t]) for k in trained for s, t in itertools.combinations(sorted(p[k]), 2)]
                  for p in (ref, oth)]
        cells = [f"{median(d):.4f} ({len(d)})" if d else "-" for d in (cross, *within)]
        print(f"  {metric:16s} {cells[0]:>22s} {cells[1]:>16s} {cells[2]:>16s}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("reference", type=Path, nargs="?", help="output folder of the fp32 sweep")
    parser.add_argument("other", type=Path, nargs="?", help="output folder of the bf16 sweep")
    parser.add_argument("--fp32", type=Path, nargs="+", help="fp32 output folders to pool across seeds")
    parser.add_argument("--bf16", type=Path, nargs="+", help="bf16 output folders to pool across seeds")
    args = parser.parse_args()
    if args.fp32 or args.bf16:
        if not (args.fp32 and args.bf16) or args.reference:
            parser.error("give either two folders, or --fp32 FOLDER... and --bf16 FOLDER...")
        compare_pooled(args.fp32, args.bf16)
    elif args.reference and args.other:
        compare_two(args.reference, args.other)
    else:
        parser.error("give either two folders, or --fp32 FOLDER... and --bf16 FOLDER...")


if __name__ == "__main__":
    main()
