#!/usr/bin/env bash
# Builds poolgrade's container images:
#   1. the static-pie binaries on the host (no Rust image needed),
#   2. the base image poolgrade-base:bookworm if it is missing (scripts/build-base-image.sh),
#   3. from the Dockerfile, with the binaries staged in .build/bin/: poolgrade:latest (the
#      grader: `poolgrade`, no reference server), poolgrade-reference:latest
#      (`timeserver`, `timeclient`) and poolgrade-pl:latest (the grader plus PrairieLearn's
#      entry point, deploy/prairielearn/),
# then prints the image sizes. Run from anywhere; exit status 0 on success, 1 on failure.
#
#   scripts/build-images.sh [--no-cargo] [--tag NAME:TAG] [--reference-tag NAME:TAG]
#                           [--pl-tag NAME:TAG]
#     --no-cargo   reuse the binaries already in target/ (CI builds them in an earlier step)
# Environment: BASE_IMAGE (default poolgrade-base:bookworm), CARGO (default cargo).
set -euo pipefail

cd "$(dirname "$0")/.."
BASE_IMAGE="${BASE_IMAGE:-poolgrade-base:bookworm}"
TAG="poolgrade:latest"
REFERENCE_TAG="poolgrade-reference:latest"
PL_TAG="poolgrade-pl:latest"
PL_ENTRY=deploy/prairielearn/poolgrade-prairielearn
CARGO_BUILD=1
TARGET=x86_64-unknown-linux-gnu
BINS="poolgrade timeserver timeclient"

while [ $# -gt 0 ]; do
  case "$1" in
    --no-cargo) CARGO_BUILD=0 ;;
    --tag) TAG="${2:?--tag needs NAME:TAG}"; shift ;;
    --reference-tag) REFERENCE_TAG="${2:?--reference-tag needs NAME:TAG}"; shift ;;
    --pl-tag) PL_TAG="${2:?--pl-tag needs NAME:TAG}"; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "build-images: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "build-images: $*"; }
t0=$(date +%s)

if [ "$CARGO_BUILD" = 1 ]; then
  log "building static-pie binaries for $TARGET"
  # Naming the target keeps build scripts and proc-macros dynamic; only our binaries are static.
  bin_args=()
  for b in $BINS; do bin_args+=(--bin "$b"); done
  RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
    "${CARGO:-cargo}" build --release --target "$TARGET" "${bin_args[@]}"
fi
t1=$(date +%s)

rm -rf .build/bin
mkdir -p .build/bin
for b in $BINS; do
  src="target/$TARGET/release/$b"
  [ -x "$src" ] || { log "missing $src (run without --no-cargo)"; exit 1; }
  cp "$src" ".build/bin/$b"
  # A static-pie binary has no interpreter: refuse a dynamic one, it would not run on the base.
  if command -v file >/dev/null && file -L ".build/bin/$b" | grep -q 'dynamically linked'; then
    log "$src is dynamically linked; build it with RUSTFLAGS=\"-C target-feature=+crt-static\""
    exit 1
  fi
done

BASE_IMAGE="$BASE_IMAGE" scripts/build-base-image.sh
t2=$(date +%s)

log "docker build --target reference -t $REFERENCE_TAG (base $BASE_IMAGE)"
docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" --target reference -t "$REFERENCE_TAG" -f Dockerfile .
log "docker build --target prairielearn -t $PL_TAG (base $BASE_IMAGE)"
[ -f "$PL_ENTRY" ] || { log "missing $PL_ENTRY"; exit 1; }
docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" --target prairielearn -t "$PL_TAG" -f Dockerfile .
log "docker build --target grader -t $TAG (base $BASE_IMAGE)"
docker build -q --build-arg "BASE_IMAGE=$BASE_IMAGE" --target grader -t "$TAG" -f Dockerfile .
# No build leftovers beyond the named images: the untagged images of this Dockerfile (the
# `bins` stage of the legacy builder, earlier builds of the tags) go.
for label in org.poolgrade.build-stage=bins org.opencontainers.image.title=poolgrade \
             org.opencontainers.image.title=poolgrade-reference \
             org.opencontainers.image.title=poolgrade-pl; do
  docker image prune --force --filter "label=$label" >/dev/null
done
t3=$(date +%s)

log "timings: cargo $((t1 - t0))s, base $((t2 - t1))s, image $((t3 - t2))s, total $((t3 - t0))s"
log "sizes:"
for img in "$BASE_IMAGE" "$TAG" "$REFERENCE_TAG" "$PL_TAG"; do
  printf '  %-28s %s MB\n' "$img" "$(( $(docker image inspect -f '{{.Size}}' "$img") / 1000000 ))"
done
for b in $BINS; do
  printf '  %-28s %s KB\n' ".build/bin/$b" "$(( $(stat -c %s ".build/bin/$b") / 1000 ))"
done
