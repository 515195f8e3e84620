"""What the intruder analysis and the forgetting evaluation add to each run, measured back to back on the saved runs
of a finished sweep (default model): per run, the weight spectra without and with the intruder cosines, and the
forgetting evaluation; once per sweep, the base's SVDs.

Usage: PYTHONPATH=src python benchmarks/intruders_cost.py OUT [MODEL]
OUT: the folder of a finished `lowrank-audit run`; MODEL: the base it ran on, default (the quick preset) or tiny (smoke).
"""

from __future__ import annotations

import copy
import json
import sqlite3
import sys
import time
from pathlib import Path

from lowrank_audit.config import ModelSpec
from lowrank_audit.evaluate import Runner
from lowrank_audit.evaluate.general import base_general, general_rows
from lowrank_audit.evaluate.weights import base_left_vectors, spectra, weight_deltas, weight_update_rows
from lowrank_audit.methods import METHODS
from lowrank_audit.models import FP32, load_model
from lowrank_audit.sweep import task_vocabulary


def _seconds(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def main(out: Path, model_source: str) -> None:
    loaded = load_model(ModelSpec(source=model_source), task_vocabulary())
    base = loaded.model
    runner = Runner(loaded.tokenizer, FP32, 32, progress=False)
    db = sqlite3.connect(out / "results.sqlite")
    runs = db.execute("SELECT task, method, rank, config_json, artifact FROM runs WHERE status='finished' AND artifact IS NOT NULL "
                      "AND method != 'base' ORDER BY task, method, rank").fetchall()
    names = None
    for task, method, rank, config, artifact in runs:
        options = json.loads(config)["method"]["options"]
        cls = METHODS.get(method)
        model = cls(cls.Options(**options)).load(copy.deepcopy(base), out / artifact)
        deltas = weight_deltas(model, base)
        if names is None:  # once per sweep: every adapted matrix's base SVD
            once, _ = _seconds(lambda: [base_left_vectors(base, n) for n in deltas if bool(deltas[n].any())])
            general_once, _ = _seconds(lambda: base_general(runner, base))
            names = list(deltas)
            print(f"once per sweep: base SVDs of {len(names)} matrices {once:.1f} s; base general text {general_once:.1f} s")
        before, _ = _seconds(lambda: spectra(deltas))
        after, own = _seconds(lambda: spectra(deltas, base, 10))
        forgetting, rows = _seconds(lambda: general_rows(runner, model, base, 0))
        count = next(r.value for r in weight_update_rows(own, None, rank) if r.metric == "weight_intruders"
                     and r.group_name is None and r.layer is None)
        label = f"{task} / {method}" + (f" r={rank}" if rank is not None else "")
        print(f"{label}: spectra {before:.1f} s -> with intruders {after:.1f} s (+{after - before:.1f} s, "
              f"{after / before:.2f}x); forgetting evaluation {forgetting:.1f} s; intruders {count:.0f}; "
              f"forgetting {next(r.value for r in rows if r.metric == 'forgetting'):.4f}")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else "default")
