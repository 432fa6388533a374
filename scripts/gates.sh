#!/bin/bash
# make test: every gate runs even when an earlier one failed. Each gate's output goes to
# tests/output/gates/<gate>.log (and to the terminal, for the gates run one after another);
# the summary names each gate's time, and ends with the tail of every failed gate's log so
# that a CI page showing only the end shows why.
#
#   scripts/gates.sh [--beside GATE]... GATE...
#
# The --beside gates run one after another in a second lane, in the background, while the
# other gates run one after another in the first: on this 2-core machine the two lanes
# keep both cores busy (molecule-kernel's qemu guests, then the lab's deploy, wait on their
# own boots and services much of the time, and the lighter gates are one process each).
set -uo pipefail
cd "$(dirname "$0")/.."
logs=tests/output/gates
mkdir -p "$logs"
start=$(date +%s)
beside=()
while [ "${1:-}" = --beside ]; do
    beside+=("$2")
    shift 2
done
passed=0
failed=()
summary=()

record() {  # gate, exit status, start time[, end time]
    local result=passed
    if [ "$2" -eq 0 ]; then passed=$((passed + 1)); else failed+=("$1"); result=FAILED; fi
    summary+=("$(printf '%-16s %-7s %5ss' "$1" "$result" "$((${4:-$(date +%s)} - $3))")")
}

lane=
if [ ${#beside[@]} -gt 0 ]; then
    echo "=== the second lane, one after another: ${beside[*]} (logs in $logs/)"
    for gate in "${beside[@]}"; do rm -f "$logs/$gate".{start,rc,end}; done
    {
        for gate in "${beside[@]}"; do
            date +%s > "$logs/$gate.start"
            make --no-print-directory "$gate" > "$logs/$gate.log" 2>&1
            echo $? > "$logs/$gate.rc"
            date +%s > "$logs/$gate.end"
        done
    } &
    lane=$!
fi
for gate in "$@"; do
    echo "=== make $gate"
    began=$(date +%s)
    make --no-print-directory "$gate" 2>&1 | tee "$logs/$gate.log"
    record "$gate" "${PIPESTATUS[0]}" "$began"
done
if [ -n "$lane" ]; then
    echo "=== waiting for the second lane (${beside[*]})"
    wait "$lane"
fi
for gate in "${beside[@]}"; do
    record "$gate" "$(cat "$logs/$gate.rc" 2>/dev/null || echo 1)" \
        "$(cat "$logs/$gate.start" 2>/dev/null || echo "$start")" "$(cat "$logs/$gate.end" 2>/dev/null || date +%s)"
    echo "=== the end of make $gate (second lane)"
    tail -n 25 "$logs/$gate.log"
done
for gate in "${failed[@]}"; do
    echo "=== the end of make $gate ($logs/$gate.log)"
    tail -n 60 "$logs/$gate.log"
    # The failures themselves may be far above the end (pytest's summary inside a molecule
    # step, an Ansible task's error): their first lines, so that a CI page shows them too.
    echo "=== failures named in make $gate's log"
    grep -a -E "^(FAILED|ERROR) |^fatal: |^failed: |^ *- '?\"?(FAILED|ERROR) |^E   " "$logs/$gate.log" | cut -c1-400 | head -n 40
done
echo "=== gates"
printf '%s\n' "${summary[@]}"
echo "make test: took $(($(date +%s) - start))s${failed[*]:+; failed: ${failed[*]}}"
echo "gates: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
