#!/usr/bin/env bash
# Grades a folder of submission folders with docker-compose.yml (agent/grader pairs that
# share the checks, and a report container that collects them) and exits with the report's
# status (0 all passed, 1 a check failed, 2 something could not be graded; anything else is
# a container failure). Always removes the containers and the volumes afterwards. Plain
# `docker compose up` does the same for ./submissions; this script takes any folders.
#
#   scripts/compose-grade.sh [SUBMISSIONS_DIR [RESULTS_DIR]]
#     SUBMISSIONS_DIR  a folder of submission folders (default $SUBMISSIONS or ./submissions;
#                      when that holds no folder, the bundled ./samples are graded)
#     RESULTS_DIR      where the reports go (default $RESULTS or ./results): per submission
#                      results.json, junit.xml, classroom.json, prairielearn.json; gradebook.csv;
#                      events.jsonl (every check's event, as `poolgrade grade --format json`)
#     RUBRIC           (environment) a rubric file for the graders and the report
# Uses `docker compose` (v2) when present, else `docker-compose` (>= 1.27). The image
# (POOLGRADE_IMAGE, default poolgrade:latest) must exist: scripts/build-images.sh.
set -euo pipefail

cd "$(dirname "$0")/.."
SUBMISSIONS="${1:-${SUBMISSIONS:-./submissions}}"
RESULTS="${2:-${RESULTS:-./results}}"

if docker compose version >/dev/null 2>&1; then
  COMPOSE=(docker compose)
elif command -v docker-compose >/dev/null; then
  COMPOSE=(docker-compose)
else
  echo "compose-grade: neither 'docker compose' nor 'docker-compose' is installed" >&2
  exit 2
fi
[ -d "$SUBMISSIONS" ] || { echo "compose-grade: no folder $SUBMISSIONS" >&2; exit 2; }
if [ -n "${RUBRIC:-}" ]; then
  [ -f "$RUBRIC" ] || { echo "compose-grade: no rubric file $RUBRIC" >&2; exit 2; }
  RUBRIC="$(cd "$(dirname "$RUBRIC")" && pwd)/$(basename "$RUBRIC")"
  export RUBRIC
fi
# Absolute paths, so the bind mounts do not depend on compose's notion of the project folder.
SUBMISSIONS="$(cd "$SUBMISSIONS" && pwd)"
mkdir -p "$RESULTS"
RESULTS="$(cd "$RESULTS" && pwd)"
export SUBMISSIONS RESULTS

PROJECT="${COMPOSE_PROJECT_NAME:-poolgrade-$$}"
# shellcheck disable=SC2317  # called by the trap
cleanup() { "${COMPOSE[@]}" -p "$PROJECT" down --volumes --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

echo "compose-grade: ${COMPOSE[*]}, submissions $SUBMISSIONS, results $RESULTS"
status=0
# --exit-code-from stops every container once the first one exits: the report, by design.
"${COMPOSE[@]}" -p "$PROJECT" up --no-build --abort-on-container-exit --exit-code-from report \
  || status=$?
echo "compose-grade: report exit status $status"
exit "$status"
