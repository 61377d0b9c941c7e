#!/usr/bin/env bash
# Grades the whole fixture corpus N times (default 10) while stress-ng loads every core, and
# prints, per run, the misgrades against the expected verdicts, then the number of verdicts
# that changed between runs. Not a test: a measurement of verdict stability under load.
#
#   scripts/stress-corpus.sh [RUNS]
# Needs: a release build (built here unless POOLGRADE names a binary), python3 with tomllib,
# stress-ng (installed if missing and root). Exit status: 0 when every run matched the
# expectations, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${1:-10}"
if ! command -v stress-ng >/dev/null; then
  [ "$(id -u)" = 0 ] || { echo "stress-corpus: install stress-ng first" >&2; exit 2; }
  apt-get install -y -qq stress-ng >/dev/null
fi
# POOLGRADE names the binary to measure; by default a fresh release build.
if [ -z "${POOLGRADE:-}" ]; then
  cargo build --release --quiet --bin poolgrade
  POOLGRADE=target/release/poolgrade
fi
work=${KEEP:-$(mktemp -d)}
mkdir -p "$work"
stress_pid=""
# The runs' events stay in $KEEP (default: a temporary folder, removed at the end).
cleanup() { [ -n "$stress_pid" ] && kill "$stress_pid" 2>/dev/null; wait 2>/dev/null; [ -n "${KEEP:-}" ] || rm -rf "$work"; }
trap cleanup EXIT
trap 'exit 130' INT TERM
stress-ng --cpu "$(nproc)" --timeout 3600s --quiet &
stress_pid=$!
total_misgrades=0
for run in $(seq 1 "$RUNS"); do
  start=$(date +%s.%N)
  status=0
  "$POOLGRADE" grade --format json --out "$work/out-$run" tests/fixtures/submissions/*/ \
    > "$work/run-$run.jsonl" 2> "$work/run-$run.err" || status=$?
  secs=$(awk "BEGIN { print $(date +%s.%N) - $start }")
  python3 scripts/compare-verdicts.py "$work/run-$run.jsonl" > "$work/cmp-$run.txt" || true
  line=$(tail -1 "$work/cmp-$run.txt")
  grep MISGRADE "$work/cmp-$run.txt" || true
  n=$(echo "$line" | awk '{print $2}')
  total_misgrades=$((total_misgrades + n))
  printf 'run %2d: %s (exit %d, %.1f s)\n' "$run" "$line" "$status" "$secs"
done
changes=$(python3 - "$work" "$RUNS" <<'PY'
import json, sys
work, runs = sys.argv[1], int(sys.argv[2])
def load(i):
    out = {}
    for line in open(f"{work}/run-{i}.jsonl"):
        e = json.loads(line)
        if e.get("event") == "stage-finished":
            r = e["report"]
            for o in r["outcomes"]:
                out[(r["submission"], r["stage"], o["id"])] = o["status"]
    return out
first = load(1)
print(sum(1 for i in range(2, runs + 1) for k, v in load(i).items() if first.get(k) != v))
PY
)
echo "stress-corpus: $RUNS runs under stress-ng --cpu $(nproc): $total_misgrades misgrades, $changes verdict changes between runs"
[ "$total_misgrades" = 0 ] && [ "$changes" = 0 ]
