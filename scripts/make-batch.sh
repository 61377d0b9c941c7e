#!/usr/bin/env bash
# Makes a batch of N submission folders for measurements, from the fixture corpus: half
# copies of the correct fixtures, half copies of fixtures with one ordinary defect (no
# hostile ones), taken in turn, so the same N always gives the same batch. Each folder holds
# only the student's files (not expected.toml).
#
#   scripts/make-batch.sh N DIR      # DIR/s001 ... DIR/sNNN; DIR must not exist yet
# Exit status: 0 done, 2 bad usage.
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-}"
DIR="${2:-}"
if ! [[ "$N" =~ ^[0-9]+$ ]] || [ -z "$DIR" ]; then
  echo "usage: scripts/make-batch.sh N DIR" >&2
  exit 2
fi
if [ -e "$DIR" ]; then
  echo "make-batch: $DIR exists already" >&2
  exit 2
fi
corpus=tests/fixtures/submissions
correct=(correct-threads-ctime correct-executor-datetime correct-mp-threadpool-iso correct-daemons-joined-own-pool)
defect=(reply-not-a-date reply-to-pid shared-pid-race steals-replies sequential spawn-is-pool
        pool-is-spawn pool-no-reuse crash-on-garbage ignores-stop exit-code-1 no-drain leaks-queue
        wrong-key)
mkdir -p "$DIR"
chmod 0755 "$DIR"
for i in $(seq 1 "$N"); do
  if [ $((i % 2)) = 1 ]; then
    src=${correct[$(((i / 2) % ${#correct[@]}))]}
  else
    src=${defect[$(((i / 2 - 1) % ${#defect[@]}))]}
  fi
  dest=$(printf '%s/s%03d' "$DIR" "$i")
  mkdir "$dest"
  find "$corpus/$src" -maxdepth 1 -type f ! -name expected.toml -exec cp {} "$dest/" \;
  chmod -R a+rX "$dest"
  echo "$src" > "$dest/.source"
done
echo "make-batch: $N submissions in $DIR"
