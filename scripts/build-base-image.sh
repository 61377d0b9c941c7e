#!/usr/bin/env bash
# Builds the base image of poolgrade's container image: Debian bookworm with python3 and
# python3-sysv-ipc (what student servers run on), nothing else. Idempotent: an existing tag is
# kept as it is (pass --force to rebuild it).
#
#   scripts/build-base-image.sh [--force] [--tag NAME:TAG] [--from registry|debootstrap]
#
# Two ways, tried in this order unless --from says which:
#   registry     `docker pull debian:bookworm-slim` (short timeout), then an apt-get layer on top.
#   debootstrap  `mmdebstrap --variant=essential` from Debian's archive, piped into
#                `docker import`: needs no registry at all (mmdebstrap must be installed).
# Exit status: 0 built or already present, 1 failed, 2 bad usage.
set -euo pipefail

TAG="${BASE_IMAGE:-poolgrade-base:bookworm}"
FORCE=0
FROM=""
PULL_TIMEOUT="${PULL_TIMEOUT:-20}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES="python3-minimal,python3-sysv-ipc"

while [ $# -gt 0 ]; do
  case "$1" in
    --force) FORCE=1 ;;
    --tag) TAG="${2:?--tag needs NAME:TAG}"; shift ;;
    --from) FROM="${2:?--from needs registry or debootstrap}"; shift ;;
    -h|--help) sed -n '2,13p' "$0"; exit 0 ;;
    *) echo "build-base-image: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

log() { echo "build-base-image: $*"; }

if [ "$FORCE" = 0 ] && docker image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG already exists ($(docker image inspect -f '{{.Size}}' "$TAG") bytes): nothing to do"
  exit 0
fi

verify() {
  docker run --rm --network none "$TAG" python3 -c \
    'import sys, sysv_ipc; print("python", sys.version.split()[0], "sysv_ipc", sysv_ipc.VERSION)'
}

from_registry() {
  log "trying the registry: docker pull debian:bookworm-slim (timeout ${PULL_TIMEOUT}s)"
  if ! timeout "$PULL_TIMEOUT" docker pull -q debian:bookworm-slim >/dev/null 2>&1; then
    log "no registry reachable"
    return 1
  fi
  # The build context is empty: the Dockerfile comes on stdin.
  docker build -t "$TAG" - <<'DOCKERFILE'
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-minimal python3-sysv-ipc \
 && rm -rf /var/lib/apt/lists/* /usr/share/doc /usr/share/man
DOCKERFILE
  log "built $TAG from debian:bookworm-slim"
}

from_debootstrap() {
  if ! command -v mmdebstrap >/dev/null; then
    log "mmdebstrap is not installed (apt-get install mmdebstrap) and no registry is reachable"
    return 1
  fi
  log "building $TAG with mmdebstrap --variant=essential from $MIRROR (no registry needed)"
  # essential: only Essential:yes packages (coreutils, dash, bash...) plus ours; no apt.
  # Documentation, man pages and locales are left out to keep the image small.
  # shellcheck disable=SC2016  # "$1" is expanded by mmdebstrap's hook shell, not here
  mmdebstrap --quiet --variant=essential --include="$PACKAGES" \
    --dpkgopt='path-exclude=/usr/share/man/*' \
    --dpkgopt='path-exclude=/usr/share/doc/*' \
    --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/locale/*' \
    --dpkgopt='path-exclude=/usr/share/info/*' \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/log/*' \
    bookworm - "$MIRROR" |
    docker import \
      --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'ENV LANG=C.UTF-8' \
      --change 'CMD ["python3"]' \
      --message "mmdebstrap --variant=essential --include=$PACKAGES bookworm" \
      - "$TAG" >/dev/null
  log "imported $TAG from an mmdebstrap tarball"
}

start=$(date +%s)
case "$FROM" in
  registry) from_registry ;;
  debootstrap) from_debootstrap ;;
  "") from_registry || from_debootstrap ;;
  *) echo "build-base-image: --from must be registry or debootstrap" >&2; exit 2 ;;
esac
verify
log "done in $(( $(date +%s) - start ))s: $TAG is $(docker image inspect -f '{{.Size}}' "$TAG") bytes"
