#!/usr/bin/env bash
# Every benchmark at its documented size, one after another, each one's output kept:
#   bench/run_all.sh OUT_DIR [PYTHON]
# OUT_DIR/NAME.txt holds each bench's table; OUT_DIR/results.jsonl one JSON line per bench.
# Takes about 6 minutes on 16 cores (scale.py: 2 x 60 s; idle.py: 60 s; restart.py fills a
# million events). docs/performance.md has the figures and the machines they came from.
set -euo pipefail
out=${1:?usage: bench/run_all.sh OUT_DIR [PYTHON]}
py=${2:-.venv/bin/python}
# Absolute, but not resolved: a venv's python is a symlink, and resolving it would leave the venv.
py="$(cd "$(dirname "$py")" && pwd)/$(basename "$py")"
mkdir -p "$out"
out=$(realpath "$out")
cd "$(dirname "$0")"
: >"$out/results.jsonl"
run() {
    local name=$1
    shift
    echo "== $name $*" >&2
    "$py" "$@" | tee "$out/$name.txt" | tail -1 >>"$out/results.jsonl"
}
run ingest ingest.py --messages 50000 --rounds 3
run store_insert store_insert.py
run ctl_latency ctl_latency.py --runs 30
run restart restart.py --events 1000000 --rounds 3
run idle idle.py --seconds 60 --nvml "${PIXELS_BENCH_NVML:-gb10}"
run scale scale.py --clients 2000 --seconds 60
