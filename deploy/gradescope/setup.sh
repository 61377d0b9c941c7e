#!/usr/bin/env bash
# Gradescope's image build step for poolgrade: Gradescope unpacks the autograder zip into
# /autograder/source and runs this once, as root, on its Ubuntu base image. It installs
#   - python3 with sysv_ipc from the base's own packages (apt-get install python3
#     python3-sysv-ipc), only when /usr/bin/python3 cannot already `import sysv_ipc`;
#   - the static grader shipped in the zip (/autograder/source/poolgrade) as
#     /usr/local/bin/poolgrade;
#   - the rubric, when the zip ships one (/autograder/source/rubric.toml), as
#     /etc/poolgrade/rubric.toml, mode 0600 in a folder of mode 0700: the unprivileged
#     backend refuses a rubric that a student server could read (SECURITY.md).
# It also closes /autograder/source (mode 0700) to everyone but root, and makes
# /autograder/run_autograder executable if Gradescope has already copied it.
#
#   bash setup.sh        (Gradescope runs it; no arguments)
# Exit status: 0 when the grader, python3 and sysv_ipc are in place, 1 otherwise.
set -euo pipefail

SOURCE="${AUTOGRADER_SOURCE:-/autograder/source}"
log() { echo "poolgrade setup: $*"; }
fail() { echo "poolgrade setup: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || fail "must run as root (Gradescope runs setup.sh as root)"
[ -f "$SOURCE/poolgrade" ] || fail "$SOURCE/poolgrade is missing: build the zip with scripts/package-gradescope.sh"

# Student servers run as `python3` from the rubric's sandbox PATH (/usr/local/bin, /usr/bin,
# /bin) under an unprivileged uid: the interpreter and its sysv_ipc must be the system's.
have_sysv_ipc() {
  PATH=/usr/local/bin:/usr/bin:/bin python3 -c 'import sysv_ipc' >/dev/null 2>&1
}
if have_sysv_ipc; then
  log "python3 with sysv_ipc already present ($(PATH=/usr/local/bin:/usr/bin:/bin command -v python3))"
else
  log "apt-get install python3 python3-sysv-ipc"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends python3 python3-sysv-ipc
  rm -rf /var/lib/apt/lists/*
  have_sysv_ipc || fail "python3 on /usr/local/bin:/usr/bin:/bin still cannot import sysv_ipc (a python3 in /usr/local/bin that is not the system's?)"
fi

install -m 0755 "$SOURCE/poolgrade" /usr/local/bin/poolgrade
/usr/local/bin/poolgrade --version >/dev/null || fail "the shipped poolgrade does not run here"
log "installed $(/usr/local/bin/poolgrade --version)"

if [ -f "$SOURCE/rubric.toml" ]; then
  install -d -m 0700 /etc/poolgrade
  install -m 0600 "$SOURCE/rubric.toml" /etc/poolgrade/rubric.toml
  chmod 0600 "$SOURCE/rubric.toml"
  log "installed the rubric as /etc/poolgrade/rubric.toml (mode 0600)"
else
  log "no rubric.toml in the zip: the default rubric applies"
fi

# Nothing of the zip is for the student servers' eyes; run_autograder runs from its copy.
chmod 0700 "$SOURCE"
chmod 0755 "$SOURCE/run_autograder" 2>/dev/null || true
if [ -f /autograder/run_autograder ]; then
  chmod 0755 /autograder/run_autograder
fi
log "done"
