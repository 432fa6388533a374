#!/bin/bash
# Build the collection tarball, install it into an empty collections path, and
# use it from there: the inventory plugin parses the lab fabric file and the
# playbooks resolve by FQCN (ansible-playbook vrstack.cloud.site).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vrstack-build.XXXXXX)
trap 'rm -rf "$work"' EXIT

export ANSIBLE_CONFIG="$work/ansible.cfg"
sed "s#^collections_path = .*#collections_path = $work/collections#" "$repo/ansible.cfg" > "$ANSIBLE_CONFIG"

ansible-galaxy collection build --output-path "$work" "$repo" >/dev/null
tarball=$(ls "$work"/vrstack-cloud-*.tar.gz)
echo "build-check: built $(basename "$tarball") ($(du -h "$tarball" | cut -f1))"
# Dependencies come from the `ansible` package in the virtualenv (no Galaxy server).
ansible-galaxy collection install --force --no-deps -p "$work/collections" "$tarball" >/dev/null

cd "$work"   # away from the checkout, so nothing resolves to it by accident
cp "$repo/inventories/lab/fabric.yml" "$work/fabric.yml"
ansible-inventory -i fabric.yml --graph compute | grep -q lab-cmp1
for playbook in site prechecks verify; do
    ansible-playbook -i fabric.yml "vrstack.cloud.$playbook" --syntax-check >/dev/null
    echo "build-check: vrstack.cloud.$playbook resolves and parses from the installed tarball"
done
ansible-doc -t inventory vrstack.cloud.fabric >/dev/null
# Files the roles read from the collection itself (bundled sources, the OpenStack
# release's constraints) must be in the tarball, not only in the checkout.
installed="$work/collections/ansible_collections/vrstack/cloud"
for path in requirements/openstack/constraints.txt requirements/openstack/services.txt \
            files/sdn-src/pyproject.toml files/vrouter-src/Makefile files/guest/init; do
    [ -e "$installed/$path" ] || { echo "build-check: $path is missing from the tarball (galaxy.yml build_ignore?)" >&2; exit 1; }
done
echo "build-check: bundled sources and OpenStack constraints are in the tarball"
echo "build-check: ok"
