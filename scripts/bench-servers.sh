#!/usr/bin/env bash
# Same-run throughput comparison of the time servers: `timeserver --mode inline|pool|spawn`
# and the Python ThreadPoolExecutor server of the handout (tests/fixtures/python/
# handout_pool_server.py), each driven by `timeclient bench --clients 8` with no work delay.
# Prints requests/s per server and the ratios the project's goals name
# (pool >= 80% of inline, pool >= 3x the Python pool server).
#
# Usage: scripts/bench-servers.sh [REQUESTS_PER_CLIENT]   (default 3000)
# Env:   CLIENTS (default 8), ROUNDS (default 3: each server is benched once per round, the
#        rounds interleaved, and its best round is kept).
# Every server runs on a private key and is stopped; queues and processes are cleaned up on
# any exit (trap).
set -euo pipefail

cd "$(dirname "$0")/.."
REQUESTS="${1:-3000}"
CLIENTS="${CLIENTS:-8}"
ROUNDS="${ROUNDS:-3}"
BIN=target/release
PY=tests/fixtures/python/handout_pool_server.py

cargo build --release --quiet --bin timeserver --bin timeclient

# A private key per run: far from 666, distinct per script process.
KEY=$(( 0x42000000 + ($$ & 0xffff) * 16 ))
SERVER_PID=""

cleanup() {
    if [[ -n "$SERVER_PID" ]] && kill -0 "$SERVER_PID" 2>/dev/null; then
        kill "$SERVER_PID" 2>/dev/null || true
        sleep 0.2
        kill -9 "$SERVER_PID" 2>/dev/null || true
    fi
    ipcrm -Q "$KEY" 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_queue() {
    for _ in $(seq 1 200); do
        if awk -v k="$KEY" 'NR > 1 && $1 == k { found = 1 } END { exit !found }' /proc/sysvipc/msg; then
            return 0
        fi
        sleep 0.025
    done
    echo "server on key $KEY did not create its queue" >&2
    return 1
}

# run_server NAME COMMAND...: starts the server, benches it once, stops it, prints the
# requests/s.
run_server() {
    local name="$1"; shift
    "$@" >/dev/null &
    SERVER_PID=$!
    wait_queue
    local json rps
    json=$("$BIN/timeclient" bench --clients "$CLIENTS" --requests "$REQUESTS" --key "$KEY")
    rps=$(python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["errors"] == 0, d; print(round(d["requests_per_sec"]))' <<<"$json")
    echo "  $name: $rps req/s  $json" >&2
    "$BIN/timeclient" --stop --key "$KEY"
    wait "$SERVER_PID"
    SERVER_PID=""
    echo "$rps"
}

# The rounds are interleaved (inline, pool, spawn, python, then again), so that a change in
# the machine's load during the run weighs on every server alike; the best round is kept.
max() { (( $1 > $2 )) && echo "$1" || echo "$2"; }
echo "bench: $CLIENTS clients x $REQUESTS requests, best of $ROUNDS interleaved rounds, no work delay, $(nproc) CPUs" >&2
inline=0 pool=0 spawn=0 python=0
for round in $(seq 1 "$ROUNDS"); do
    echo "round $round" >&2
    inline=$(max "$inline" "$(run_server inline "$BIN/timeserver" --key "$KEY" --mode inline)")
    pool=$(max "$pool" "$(run_server pool "$BIN/timeserver" --key "$KEY" --mode pool --workers 4)")
    spawn=$(max "$spawn" "$(run_server spawn "$BIN/timeserver" --key "$KEY" --mode spawn)")
    python=$(max "$python" "$(TIMESERVER_WORKERS=4 run_server python python3 "$PY" "$KEY")")
done

printf '%-28s %12s\n' server 'req/s'
printf '%-28s %12s\n' 'timeserver --mode inline' "$inline"
printf '%-28s %12s\n' 'timeserver --mode pool' "$pool"
printf '%-28s %12s\n' 'timeserver --mode spawn' "$spawn"
printf '%-28s %12s\n' 'python ThreadPoolExecutor' "$python"
python3 - "$inline" "$pool" "$spawn" "$python" <<'PYEOF'
import sys
inline, pool, spawn, python = map(float, sys.argv[1:])
print(f"pool / inline  = {pool / inline:.2f}  (goal >= 0.80)")
print(f"pool / python  = {pool / python:.2f}  (goal >= 3.00)")
print(f"spawn / pool   = {spawn / pool:.2f}")
print(f"inline / python = {inline / python:.2f}")
PYEOF
