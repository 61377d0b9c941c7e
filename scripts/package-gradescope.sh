#!/usr/bin/env bash
# Packages poolgrade as a Gradescope autograder: writes dist/gradescope/autograder.zip with,
# at its root,
#   setup.sh        deploy/gradescope/setup.sh (installs python3-sysv-ipc and the grader)
#   run_autograder  deploy/gradescope/run_autograder (grades /autograder/submission)
#   poolgrade       the static-pie grader, built here for x86_64-unknown-linux-gnu
#   rubric.toml     the rubric given with --rubric (none by default: the defaults apply)
# Upload the zip as the assignment's autograder (deploy/gradescope/README.md).
#
#   scripts/package-gradescope.sh [--no-cargo] [--rubric FILE] [--deadline SECS] [--output ZIP]
#     --no-cargo     reuse target/x86_64-unknown-linux-gnu/release/poolgrade (as built by
#                    scripts/build-images.sh) instead of building it
#     --rubric FILE  ship this rubric (checked by the grader before it is packaged)
#     --deadline SECS  seconds run_autograder lets the grader run (default 480, for
#                    Gradescope's default 10-minute timeout: keep it 2 minutes below yours)
#     --output ZIP   write the zip here instead of dist/gradescope/autograder.zip
# Uses `zip` when installed, else python3's zipfile. Environment: CARGO (default cargo).
# Exit status: 0 when the zip is written, 1 on failure, 2 on a bad argument.
set -euo pipefail

cd "$(dirname "$0")/.."
TARGET=x86_64-unknown-linux-gnu
BIN="target/$TARGET/release/poolgrade"
CARGO_BUILD=1
RUBRIC=""
DEADLINE=""
OUTPUT="dist/gradescope/autograder.zip"

while [ $# -gt 0 ]; do
  case "$1" in
    --no-cargo) CARGO_BUILD=0 ;;
    --rubric) RUBRIC="${2:?--rubric needs a FILE}"; shift ;;
    --deadline) DEADLINE="${2:?--deadline needs SECS}"; shift ;;
    --output) OUTPUT="${2:?--output needs a ZIP path}"; shift ;;
    -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
    *) echo "package-gradescope: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "package-gradescope: $*"; }
fail() { echo "package-gradescope: $*" >&2; exit 1; }

if [ "$CARGO_BUILD" = 1 ]; then
  log "building the static-pie grader for $TARGET"
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    "${CARGO:-cargo}" build --release --target "$TARGET" --bin poolgrade
fi
[ -x "$BIN" ] || fail "missing $BIN (run without --no-cargo)"
# Gradescope's Ubuntu has its own libc: only a static binary runs there for certain.
if command -v file >/dev/null && file -L "$BIN" | grep -q 'dynamically linked'; then
  fail "$BIN is dynamically linked; build it with RUSTFLAGS=\"-C target-feature=+crt-static\""
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -m 0755 deploy/gradescope/setup.sh "$stage/setup.sh"
install -m 0755 deploy/gradescope/run_autograder "$stage/run_autograder"
if [ -n "$DEADLINE" ]; then
  case "$DEADLINE" in
    ''|*[!0-9]*) echo "package-gradescope: --deadline needs a whole number of seconds" >&2; exit 2 ;;
  esac
  sed -i "s/^DEADLINE=\"\${POOLGRADE_DEADLINE:-[0-9]*}\"\$/DEADLINE=\"\${POOLGRADE_DEADLINE:-$DEADLINE}\"/" \
    "$stage/run_autograder"
  grep -q "^DEADLINE=\"\${POOLGRADE_DEADLINE:-$DEADLINE}\"\$" "$stage/run_autograder" \
    || fail "could not set the deadline in run_autograder"
fi
install -m 0755 "$BIN" "$stage/poolgrade"
if [ -n "$RUBRIC" ]; then
  [ -f "$RUBRIC" ] || fail "no rubric file $RUBRIC"
  install -m 0600 "$RUBRIC" "$stage/rubric.toml"
  # A rubric error found now costs nothing; found on Gradescope, it costs every submission.
  # Grading an empty folder loads the rubric and runs no server: exit 1 (every check failed)
  # means the rubric is valid, 2 that it is not.
  mkdir -m 0700 "$stage/.check" "$stage/.check/empty"
  rc=0
  "$BIN" grade --isolation unprivileged --rubric "$stage/rubric.toml" --out "$stage/.check/out" \
    "$stage/.check/empty" >/dev/null 2>"$stage/.check/err" || rc=$?
  [ "$rc" = 1 ] || fail "$RUBRIC was refused: $(cat "$stage/.check/err")"
  rm -rf "$stage/.check"
fi

mkdir -p "$(dirname "$OUTPUT")"
OUTPUT="$(cd "$(dirname "$OUTPUT")" && pwd)/$(basename "$OUTPUT")"
rm -f "$OUTPUT"
files=(setup.sh run_autograder poolgrade)
[ -f "$stage/rubric.toml" ] && files+=(rubric.toml)
if command -v zip >/dev/null; then
  (cd "$stage" && zip -q -X "$OUTPUT" "${files[@]}")
else
  # zipfile keeps the mode bits when the entries carry them (external_attr).
  (cd "$stage" && python3 - "$OUTPUT" "${files[@]}" <<'PY'
import os, sys, zipfile
with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as z:
    for name in sys.argv[2:]:
        info = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
        info.external_attr = (0o100000 | (os.stat(name).st_mode & 0o777)) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        with open(name, "rb") as f:
            z.writestr(info, f.read())
PY
  )
fi
log "wrote $OUTPUT ($(( $(stat -c %s "$OUTPUT") / 1000 )) KB: ${files[*]})"
