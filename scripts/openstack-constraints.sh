#!/usr/bin/env bash
# Re-pin requirements/openstack/constraints.txt: resolve requirements/openstack/services.txt
# (the OpenStack release's services, pinned there with ==) in a scratch virtualenv on
# Python 3.11 (Debian 12's) and freeze the result. Run it after changing services.txt
# or to pick up a point release; review the diff and commit both files.
#   scripts/openstack-constraints.sh [PYTHON]   (default: /usr/bin/python3.11, Debian 12's: the
# hosts' interpreter; markers such as python_full_version<"3.11.3" depend on it)
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
req_dir=$here/requirements/openstack
python=${1:-/usr/bin/python3.11}
scratch=$(mktemp -d /tmp/openstack-constraints.XXXXXX)
trap 'rm -rf "$scratch"' EXIT

"$python" -m venv "$scratch/venv"
"$scratch/venv/bin/pip" install --quiet --upgrade pip
"$scratch/venv/bin/pip" install --quiet -r "$req_dir/services.txt"
release=$(sed -n 's/^# *release: *//p' "$req_dir/services.txt" | head -n 1)
{
    echo "# Constraints for OpenStack ${release:-?}: every package that requirements/openstack/services.txt"
    echo "# pulls in, resolved from PyPI with pip on $("$scratch/venv/bin/python" -V) on $(date -u +%Y-%m-%d)."
    echo "# Made by scripts/openstack-constraints.sh (run it again to refresh); OpenStack's own"
    echo "# upper-constraints for the release were not available to this build."
    "$scratch/venv/bin/pip" freeze --all --exclude pip --exclude setuptools --exclude wheel
} >"$req_dir/constraints.txt.new"
mv "$req_dir/constraints.txt.new" "$req_dir/constraints.txt"
echo "wrote $req_dir/constraints.txt ($(grep -vc '^#' "$req_dir/constraints.txt") packages)"
