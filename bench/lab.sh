#!/bin/bash
# Lab timings: warm creation (cached root file system, fresh overlays), `up` when
# already up, a no-op rerun of site.yml, memory per host and `down`. With --cold,
# first a cold creation: the root file system built from scratch into a temporary
# cache (a few minutes). Replaces any running lab and leaves none behind.
#   bench/lab.sh [--cold]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_CONFIG="$repo/ansible.cfg"
inv=${LAB_INVENTORY:-inventories/lab}
# Have the lab to ourselves: other lab.py users wait until the bench is done.
if [[ ${VRSTACK_LAB_LOCK_HELD:-} != 1 ]]; then
    exec python tools/lab.py hold -- "$0" "$@"
fi
log=$(mktemp /tmp/vrstack-lab-bench.XXXXXX.log)
cold=false
[[ ${1:-} == --cold ]] && cold=true

lab() { python tools/lab.py "$@" --inventory "$inv" >>"$log" 2>&1; }

# timed LABEL CMD...: run CMD (output to the log), print its wall time.
timed() {
    local label=$1 start end
    shift
    start=$EPOCHREALTIME
    if ! "$@"; then
        echo "bench: '$label' failed; see $log" >&2
        exit 1
    fi
    end=$EPOCHREALTIME
    awk -v l="$label" -v s="$start" -v e="$end" 'BEGIN { printf "%-34s %7.1f s\n", l ":", e - s }'
}

lab down --purge
if $cold; then
    cache=$(mktemp -d /var/cache/vrstack/lab/bench-cold.XXXXXX)
    trap 'rm -rf "$cache"' EXIT
    timed "cold create (rootfs + hosts)" lab up --rootfs-cache "$cache"
    lab down --purge
fi
timed "warm create (cached rootfs)" lab up
timed "up when already up" lab up

if [[ -f playbooks/site.yml ]]; then
    rerun=$log.rerun
    site() { ansible-playbook -i "$inv" playbooks/site.yml >"$1" 2>&1; }
    timed "site.yml first run" site "$log.first"
    timed "site.yml no-op rerun" site "$rerun"
    cat "$log.first" "$rerun" >>"$log"
    changed=$(awk '/ changed=/ { sub(/.*changed=/, ""); sum += $1 } END { print sum + 0 }' "$rerun")
    printf '%-34s %7d\n' "site.yml no-op rerun changed:" "$changed"
    rm -f "$log.first" "$rerun"
else
    echo "site.yml: playbooks/site.yml not found, skipped"
fi

echo "memory per host (PSS of its processes):"
python tools/lab.py status --inventory "$inv" | awk '{ print "  " $1 ": " $8 " " $9 }'
timed "down" lab down --purge
echo "log: $log"
