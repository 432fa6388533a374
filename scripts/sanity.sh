#!/bin/bash
# ansible-test needs the collection at .../ansible_collections/vrstack/cloud and
# lists files with git, so run it on a copy of the committed-or-not working tree.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/vrstack-sanity.XXXXXX)
trap 'rm -rf "$work"' EXIT
dest="$work/ansible_collections/vrstack/cloud"
mkdir -p "$dest"
rsync -a --exclude-from="$repo/scripts/sanity-exclude.txt" "$repo/" "$dest/"
# ansible-test downloads a pip bootstrap script from a host outside the package
# registries; give it our stand-in under the name it looks for.
pip_version=$(python - <<'PY'
import re, ansible_test._internal.python_requirements as r
print(re.search(r"pip='([0-9.]+)'", open(r.__file__).read()).group(1))
PY
)
mkdir -p ~/.ansible/test/cache
cp "$repo/scripts/ansible-test-get-pip.py" ~/.ansible/test/cache/"get_pip_${pip_version//./_}.py"
cd "$dest"
# The copy has no git history: ansible-test then walks the tree itself.
ansible-test sanity --python 3.11 --requirements --color no "$@"
