#!/usr/bin/env bash
# Writes the GitHub Classroom workflow of one poolgrade release: templates/autograde.yml with
# that release as the default of POOLGRADE_REPOSITORY, POOLGRADE_VERSION and POOLGRADE_SHA256
# (an Actions variable the course sets still overrides its default). release.yml attaches the
# result to the release as autograde.yml, so a course that copies it sets no variable.
#
#   scripts/render-classroom-template.sh OWNER/NAME TAG SHA256 [TEMPLATE] > autograde.yml
#     OWNER/NAME  the GitHub repository whose release publishes poolgrade-x86_64-linux
#     TAG         the release tag (v0.1.0)
#     SHA256      the binary's SHA-256 (64 hexadecimal digits)
#     TEMPLATE    default: templates/autograde.yml beside this script
# Exit status: 0 written; 2 bad arguments, or the template lacks a line it must have.
set -euo pipefail

usage() { sed -n '2,12p' "$0" >&2; exit 2; }
if [ $# -lt 3 ] || [ $# -gt 4 ]; then usage; fi
repository=$1
tag=$2
sha=$(printf '%s' "$3" | tr 'A-F' 'a-f')
template=${4:-"$(dirname "$0")/../templates/autograde.yml"}

# The values land inside single-quoted YAML strings: only characters that cannot end one.
[[ $repository =~ ^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$ ]] || { echo "render: bad repository $repository" >&2; exit 2; }
[[ $tag =~ ^[A-Za-z0-9_.+-]+$ ]] || { echo "render: bad tag $tag" >&2; exit 2; }
[[ $sha =~ ^[0-9a-f]{64}$ ]] || { echo "render: bad SHA-256 $3" >&2; exit 2; }
[ -r "$template" ] || { echo "render: cannot read $template" >&2; exit 2; }

text=$(cat "$template")
for pair in "REPOSITORY=$repository" "VERSION=$tag" "SHA256=$sha"; do
  name=POOLGRADE_${pair%%=*}
  value=${pair#*=}
  line="      $name: \${{ vars.$name }}"
  count=$(grep -cxF -- "$line" <<<"$text" || true)
  [ "$count" = 1 ] || { echo "render: $template has $count line(s) '$line', not 1" >&2; exit 2; }
  text=${text/"$line"/"      $name: \${{ vars.$name || '$value' }}"}
done
printf '%s\n' "$text"
