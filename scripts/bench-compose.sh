#!/usr/bin/env bash
# Measures native grading against Compose grading on the same batch, side by side: makes a
# batch of N submissions (scripts/make-batch.sh), then for each of R rounds grades it with
# `poolgrade grade` (release build) and with `docker compose up --exit-code-from report`,
# alternating, and prints each wall time, the best of each, their ratio, and whether the two
# gradebooks agree cell by cell (the times column left out).
#
#   scripts/bench-compose.sh [N [R]]        # defaults: 40 submissions, 1 round
# Needs the images (scripts/build-images.sh) and root (the native sandbox). Exit status 0
# when every round's gradebooks agree, 1 when one differs, 2 on a failure to run.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-40}"
ROUNDS="${2:-1}"
work=$(mktemp -d)
trap 'docker compose -p poolgrade-bench down --volumes >/dev/null 2>&1 || docker-compose -p poolgrade-bench down --volumes >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
if docker compose version >/dev/null 2>&1; then COMPOSE=(docker compose); else COMPOSE=(docker-compose); fi

cargo build --release --quiet --bin poolgrade
scripts/make-batch.sh "$N" "$work/batch" >/dev/null
best() { sort -n | head -1; }
: >"$work/native.times"
: >"$work/compose.times"
agree=0
for r in $(seq 1 "$ROUNDS"); do
  rm -rf "$work/native" "$work/compose"
  t0=$(date +%s.%N)
  target/release/poolgrade grade --out "$work/native" "$work/batch"/s* >/dev/null 2>&1 || true
  t1=$(date +%s.%N)
  SUBMISSIONS="$work/batch" RESULTS="$work/compose" "${COMPOSE[@]}" -p poolgrade-bench \
    up --exit-code-from report >"$work/compose.log" 2>&1 || true
  t2=$(date +%s.%N)
  timeout 180 "${COMPOSE[@]}" -p poolgrade-bench down --volumes >/dev/null 2>&1 || echo "bench-compose: down failed" >&2
  native=$(echo "$t1 - $t0" | bc)
  compose=$(echo "$t2 - $t1" | bc)
  echo "$native" >>"$work/native.times"
  echo "$compose" >>"$work/compose.times"
  if python3 - "$work/native/gradebook.csv" "$work/compose/gradebook.csv" <<'EOF'
import csv, sys
def load(p):
    return {r["submission"]: {k: v for k, v in r.items() if "." in k} for r in csv.DictReader(open(p))}
a, b = load(sys.argv[1]), load(sys.argv[2])
diff = [(s, k, a[s][k], b.get(s, {}).get(k)) for s in a for k in a[s] if a[s][k] != b.get(s, {}).get(k)]
print(f"  gradebooks: {len(a)} and {len(b)} submissions, {len(diff)} cells differ {diff[:5]}")
sys.exit(1 if diff or len(a) != len(b) else 0)
EOF
  then :; else agree=1; fi
  printf 'round %s: native %.1f s, compose %.1f s\n' "$r" "$native" "$compose"
done
bn=$(best <"$work/native.times")
bc_=$(best <"$work/compose.times")
printf 'best of %s: native %.1f s, compose %.1f s, compose/native %.2f\n' "$ROUNDS" "$bn" "$bc_" "$(echo "$bc_ / $bn" | bc -l)"
exit "$agree"
