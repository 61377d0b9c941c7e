#!/usr/bin/env bash
# Compares the handout's Exercise 1 in Python (tests/fixtures/python/exercise1_pool.py:
# multiprocessing.Pool, the handout's is_prime, pool.map with chunksize count/(4*workers))
# with `primes --method trial` and `primes --method fast` (release build): same machine,
# same run, same shared input file, same worker count. Each program runs REPEAT times and
# its fastest timed region is kept (every program times only its pool work: no start-up,
# no reading of the inputs, no output).
#
#   scripts/compare-primes.sh            # 10^6 integers, 2 workers, best of 3
#   COUNT=100000 WORKERS=4 REPEAT=1 SEED=7 scripts/compare-primes.sh
#
# Goals: trial at least 50x faster than Python, fast at least 300x; prime counts identical.
# Exit codes: 0 the counts are identical (goals are reported, met or not), 1 the counts
# differ or a program failed.
set -euo pipefail

COUNT=${COUNT:-1000000}
WORKERS=${WORKERS:-2}
REPEAT=${REPEAT:-3}
SEED=${SEED:-2024}

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cargo build --release --quiet --bin primes
primes="${CARGO_TARGET_DIR:-$root/target}/release/primes"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
inputs="$work/inputs.txt"
python3 - "$COUNT" "$SEED" "$inputs" <<'EOF'
import random, sys
count, seed, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
random.seed(seed)
with open(path, "w") as f:
    f.writelines(f"{random.randint(10**3, 10**6)}\n" for _ in range(count))
EOF

# Runs one program REPEAT times, one JSON object a line, into $work/<name>.jsonl.
measure() {
    local name=$1
    shift
    : >"$work/$name.jsonl"
    for _ in $(seq "$REPEAT"); do
        "$@" >>"$work/$name.jsonl"
    done
}

echo "compare-primes: $COUNT integers in [10^3, 10^6] (Python seed $SEED), $WORKERS workers, best of $REPEAT, $(nproc) CPUs"
measure python python3 tests/fixtures/python/exercise1_pool.py --input "$inputs" --workers "$WORKERS"
measure trial "$primes" --input "$inputs" --workers "$WORKERS" --method trial --json
measure fast "$primes" --input "$inputs" --workers "$WORKERS" --method fast --json

python3 - "$work" <<'EOF'
import json, sys
work = sys.argv[1]
def load(name):
    runs = [json.loads(line) for line in open(f"{work}/{name}.jsonl") if line.strip()]
    return min(runs, key=lambda r: r["seconds"]), runs
programs = [("python", "Python multiprocessing.Pool, handout is_prime", None),
            ("trial", "primes --method trial", 50),
            ("fast", "primes --method fast", 300)]
results = {name: load(name) for name, _, _ in programs}
base = results["python"][0]["seconds"]
print(f"{'program':<47} {'best s':>10} {'all runs (s)':>28} {'primes':>8} {'speedup':>9}  goal")
for name, label, goal in programs:
    best, runs = results[name]
    speedup = base / max(best["seconds"], 1e-9)
    every = " ".join(f"{r['seconds']:.4f}" for r in runs)
    verdict = "" if goal is None else f">= {goal}x: {'met' if speedup >= goal else 'NOT met'}"
    print(f"{label:<47} {best['seconds']:>10.4f} {every:>28} {best['primes']:>8} {speedup:>8.1f}x  {verdict}")
counts = {r["primes"] for _, runs in results.values() for r in runs}
if len(counts) != 1:
    print(f"prime counts DIFFER: {sorted(counts)}")
    sys.exit(1)
print(f"prime counts identical: {counts.pop()}")
EOF
