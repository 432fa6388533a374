#!/bin/bash
# A virtualenv with the OpenStack services vrstack deploys (requirements/openstack/
# services.txt under constraints.txt), the OpenStack integration tests' own needs, and
# the vrstack package from this checkout's files/sdn-src (without its dependencies).
# Built once per content of those files under /var/cache/vrstack; prints its path.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${VRSTACK_CACHE:-/var/cache/vrstack}
python=${VRSTACK_OPENSTACK_PYTHON:-/usr/bin/python3}
services="$repo/requirements/openstack/services.txt"
constraints="$repo/requirements/openstack/constraints.txt"
testreqs="$repo/files/sdn-src/tests/openstack/requirements.txt"
pyproject="$repo/files/sdn-src/pyproject.toml"

log() { printf 'openstack-venv: %s\n' "$*" >&2; }

key=$( (cat "$services" "$constraints" "$testreqs" "$pyproject"; "$python" -c 'import sys; print(sys.version)') \
    | sha256sum | cut -c1-12)
venv="$cache/openstack-venv-$key"
mkdir -p "$cache"

# One builder at a time; the others wait (bounded) and then use its result.
exec 9>"$venv.lock"
if ! flock -w 1800 9; then
    log "gave up waiting 30 min for the lock $venv.lock"
    exit 1
fi
# venv scripts hard-code their path, so build in place; .complete marks success.
if [[ ! -e "$venv/.complete" ]]; then
    start=$(date +%s)
    log "building $venv (a few minutes)"
    rm -rf "$venv"
    "$python" -m venv "$venv"
    "$venv/bin/pip" install -q --disable-pip-version-check -c "$constraints" \
        -r "$services" -r "$testreqs"
    touch "$venv/.complete"
    log "built in $(($(date +%s) - start)) s"
fi
# vrstack itself (its os-vif and ML2 entry points) from this checkout, on every call:
# the venv is shared by checkouts, so an editable link would test another tree's code.
# Built from a copy so no build files land in the checkout.
src=$(mktemp -d)
trap 'rm -rf "$src"' EXIT
cp -r "$repo/files/sdn-src/pyproject.toml" "$repo/files/sdn-src/vrstack" "$src/"
"$venv/bin/pip" install -q --disable-pip-version-check --no-deps --force-reinstall "$src" >&2
echo "$venv"
