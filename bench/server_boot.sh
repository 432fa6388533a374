#!/bin/bash
# Time from `openstack server create` to the server answering ping (median of 5) in
# the deployed lab cloud (roles/smoke's timing rounds), against a baseline run in the
# same go: the same guest disk booted by qemu directly on this machine, to its DHCP
# address (tests/integration/guest). Needs a deployed lab (make lab); leaves it as it was.
#   bench/server_boot.sh [ROUNDS]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_CONFIG="$repo/ansible.cfg"
inv=${LAB_INVENTORY:-inventories/lab}
rounds=${1:-5}
# lab.py hold names the labs it holds (a comma-separated list) in VRSTACK_LAB_LOCK_HELD.
if [[ ,${VRSTACK_LAB_LOCK_HELD:-}, != *,lab,* ]]; then
    exec python tools/lab.py hold -- "$0" "$@"
fi
log=$(mktemp /tmp/vrstack-server-boot.XXXXXX)
image=$(python tools/guest_image.py)

# Baseline: qemu straight on this machine, boot to the address on the console.
base=()
for _ in $(seq "$rounds"); do
    python -m pytest -q -p no:cacheprovider tests/integration/guest -k boots \
        --junitxml="$log.xml" >>"$log" 2>&1 || { echo "bench: baseline boot failed; see $log" >&2; exit 1; }
    base+=("$(python -c 'import sys, xml.etree.ElementTree as E
print(next(p.get("value") for p in E.parse(sys.argv[1]).iter("property") if p.get("name") == "boot_to_address_s"))' "$log.xml")")
done

ansible-playbook -i "$inv" playbooks/smoke.yml -e "smoke_image_file=$image" \
    -e "smoke_boot_timing_rounds=$rounds" >"$log.smoke" 2>&1 \
    || { echo "bench: smoke play failed; see $log.smoke" >&2; exit 1; }
timing=$(grep -o 'smoke boot timing: {[^}]*}' "$log.smoke" | tail -1 | sed 's/^smoke boot timing: //; s/\\"/"/g')

python - "$timing" "${base[@]}" <<'PY'
import json, statistics, sys
cloud = json.loads(sys.argv[1])
base = [float(x) for x in sys.argv[2:]]
print(f"server create -> ping, {len(cloud['rounds'])} rounds: {cloud['rounds']} s, median {statistics.median(cloud['rounds']):.1f} s")
print(f"baseline qemu boot -> DHCP address, {len(base)} rounds: {base} s, median {statistics.median(base):.1f} s")
print(f"ratio (cloud / bare qemu): {statistics.median(cloud['rounds']) / statistics.median(base):.2f}")
PY
echo "logs: $log $log.smoke"
