#!/usr/bin/env bash
# Wall time of the default audit (`lowrank-audit run`, quick preset) on this machine, and its split
# into training and evaluation read back from the store, and the machine's peak memory in use (benchmarks/memwatch.py).
# Usage: bash benchmarks/quick_preset.sh [OUT [RUN OPTIONS...]]
set -euo pipefail
OUT="${1:-benchmarks/out/quick}"
shift || true
rm -rf "$OUT"
WATCH=$(mktemp -d)
trap 'touch "$WATCH/stop"' EXIT  # the watcher stops however the run ends
python "$(dirname "$0")/memwatch.py" "$WATCH/report" "$WATCH/stop" &
start=$(date +%s.%N)
lowrank-audit run --out "$OUT" --no-progress "$@"
end=$(date +%s.%N)
touch "$WATCH/stop"
wait
cat "$WATCH/report"
python - "$OUT" "$start" "$end" <<'PY'
import sqlite3, sys
out, start, end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
db = sqlite3.connect(f"{out}/results.sqlite")
train = db.execute("SELECT sum(value) FROM metrics WHERE metric='train_seconds'").fetchone()[0]
evals = db.execute("SELECT sum(value) FROM metrics WHERE metric='eval_seconds'").fetchone()[0]
print(f"wall {end - start:.0f} s; training {train:.0f} s; evaluation of trained runs {evals:.0f} s; "
      f"rest (model load, base evaluation, saving, report) {end - start - train - evals:.0f} s")
PY
