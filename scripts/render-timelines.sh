#!/usr/bin/env bash
# Draws the README's two timeline pictures from real grading: the pool stage of a serial
# server (samples/dave, one request after another: a staircase) and of a pool server
# (samples/alice, TIMESERVER_WORKERS=3: waves three wide), each the `pool-bounded` check of
# its report.html, rendered by headless Chromium into docs/timeline-serial.png and
# docs/timeline-pool.png.
#
#   scripts/render-timelines.sh
# Needs root (the native grader), python3 with sysv_ipc and chromium. Exit status 0 when
# both pictures were written, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v chromium >/dev/null || { echo "render-timelines: install chromium first" >&2; exit 1; }
cargo build --release --quiet --bin poolgrade
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat > "$work/rubric.toml" <<'TOML'
[stages.spawn]
enabled = false
TOML
target/release/poolgrade grade --rubric "$work/rubric.toml" --out "$work/out" samples/dave samples/alice >/dev/null || true
for pair in serial:dave pool:alice; do
  name=${pair%%:*} sub=${pair#*:}
  [ -f "$work/out/$sub/report.html" ] || { echo "render-timelines: no report for $sub" >&2; exit 1; }
  # The check's section, framed at its anchor: a screenshot shows the top of a page only.
  printf '<!DOCTYPE html><html><body style="margin:0"><iframe src="%s/report.html#pool-pool-bounded" width="760" height="560" style="border:0"></iframe></body></html>\n' \
    "$sub" > "$work/out/frame-$name.html"
  chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --no-first-run \
    --user-data-dir="$work/profile" --window-size=760,560 --virtual-time-budget=3000 \
    --screenshot="docs/timeline-$name.png" "file://$work/out/frame-$name.html" >/dev/null 2>&1
  echo "render-timelines: docs/timeline-$name.png ($(stat -c %s "docs/timeline-$name.png") bytes)"
done
