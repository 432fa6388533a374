#!/bin/bash
# A virtualenv with the OpenStack services vrstack deploys (requirements/openstack/
# services.txt under constraints.txt), the OpenStack integration tests' own needs, and
# the vrstack package from files/sdn-src installed editable without its dependencies.
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
    # The checkout is another engineer's tree: link it, never copy (editable, no deps).
    "$venv/bin/pip" install -q --disable-pip-version-check --no-deps \
        -e "$repo/files/sdn-src"
    touch "$venv/.complete"
    log "built in $(($(date +%s) - start)) s"
fi
echo "$venv"
