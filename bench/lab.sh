#!/bin/bash
# Lab timings: warm creation (cached root file system, fresh overlays), `up` when
# already up, site.yml on the fresh hosts and a no-op rerun, memory per host and `down`.
# site.yml runs on Mitogen's strategy (as `make lab` does) and then, on fresh hosts
# again, on Ansible's linear strategy, the baseline: the ratios compare the two.
# With --cold, first a cold creation: the root file system built from scratch into a
# temporary cache (a few minutes). Replaces any running lab and leaves none behind.
#   bench/lab.sh [--cold]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH" ANSIBLE_CONFIG="$repo/ansible.cfg"
inv=${LAB_INVENTORY:-inventories/lab}
# Have the lab to ourselves: other lab.py users wait until the bench is done.
# lab.py hold names the labs it holds (a comma-separated list) in VRSTACK_LAB_LOCK_HELD.
if [[ ,${VRSTACK_LAB_LOCK_HELD:-}, != *,lab,* ]]; then
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

# site_runs STRATEGY: site.yml on fresh hosts, then again; prints both times and the
# rerun's changes, and keeps the times in first_<strategy>, rerun_<strategy>.
site_runs() {
    local strategy=$1 out=$log.$1 t0 t1 t2 changed
    local -a env=(ANSIBLE_STRATEGY="$strategy")
    [[ $strategy == mitogen_linear ]] && env+=(ANSIBLE_STRATEGY_PLUGINS="$mitogen")
    t0=$EPOCHREALTIME
    env "${env[@]}" ansible-playbook -i "$inv" playbooks/site.yml >"$out.first" 2>&1 \
        || { echo "bench: site.yml ($strategy) failed; see $out.first" >&2; exit 1; }
    t1=$EPOCHREALTIME
    env "${env[@]}" ansible-playbook -i "$inv" playbooks/site.yml >"$out.rerun" 2>&1 \
        || { echo "bench: site.yml rerun ($strategy) failed; see $out.rerun" >&2; exit 1; }
    t2=$EPOCHREALTIME
    changed=$(awk '/ changed=/ { sub(/.*changed=/, ""); sum += $1 } END { print sum + 0 }' "$out.rerun")
    printf -v "first_$strategy" '%s' "$(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }')"
    printf -v "rerun_$strategy" '%s' "$(awk -v b="$t1" -v c="$t2" 'BEGIN { print c - b }')"
    local -n first="first_$strategy" rerun="rerun_$strategy"
    printf '%-34s %7.1f s\n' "site.yml first run ($strategy):" "$first"
    printf '%-34s %7.1f s, changed=%d\n' "site.yml no-op rerun ($strategy):" "$rerun" "$changed"
    cat "$out.first" "$out.rerun" >>"$log"
    rm -f "$out.first" "$out.rerun"
}

mitogen=$(python -c 'import ansible_mitogen, os; print(os.path.dirname(ansible_mitogen.__file__))')/plugins/strategy
site_runs mitogen_linear
echo "memory per host (PSS of its processes):"
python tools/lab.py status --inventory "$inv" | awk '{ print "  " $1 ": " $8 " " $9 }'
timed "down" lab down --purge

# The baseline: the same on Ansible's own strategy.
lab up
site_runs linear
lab down --purge
awk -v fm="$first_mitogen_linear" -v rm="$rerun_mitogen_linear" -v fl="$first_linear" -v rl="$rerun_linear" 'BEGIN {
    printf "ratio (mitogen / linear): first run %.2f, no-op rerun %.2f\n", fm / fl, rm / rl }'
echo "log: $log"
