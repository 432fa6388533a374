#!/bin/bash
# Prepare this machine as a vrstack deploy host: Debian packages, a pinned
# virtualenv (cached outside the clone, keyed by the lock file) and the
# collection itself on Ansible's collection path. Safe to run again.
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${VRSTACK_CACHE:-/var/cache/vrstack}
lock="$repo/requirements/dev.txt"

log() { printf 'bootstrap: %s\n' "$*" >&2; }

install_debian_packages() {
    local missing=() pkg
    while read -r pkg; do
        [[ -z "$pkg" || "$pkg" == \#* ]] && continue
        dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' \
            || missing+=("$pkg")
    done < "$repo/requirements/debian-packages.txt"
    if ((${#missing[@]})); then
        log "installing Debian packages: ${missing[*]}"
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -q >/dev/null
        apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
    fi
}

make_venv() {
    local key venv
    # The lock's content, not its path: every clone of the same lock shares one venv.
    key=$( (sha256sum <"$lock"; python3 -c 'import sys; print(sys.version)') | sha256sum | cut -c1-12)
    venv="$cache/venv-$key"
    # venv scripts hard-code their path, so build in place; .complete marks success.
    if [[ ! -e "$venv/.complete" ]]; then
        log "creating virtualenv $venv"
        rm -rf "$venv"
        mkdir -p "$cache"
        python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$lock"
        touch "$venv/.complete"
    fi
    ln -sfn "$venv" "$repo/.venv"
}

link_collection() {
    # Ansible finds vrstack.cloud (and the community collections shipped in the
    # `ansible` package) through ansible.cfg's collections_path.
    mkdir -p "$repo/.collections/ansible_collections/vrstack"
    ln -sfn ../../.. "$repo/.collections/ansible_collections/vrstack/cloud"
}

install_debian_packages
make_venv
link_collection
log "ready: $(readlink "$repo/.venv")"
