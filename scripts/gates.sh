#!/bin/bash
# make test: every gate runs even when an earlier one failed. Each gate's output goes to the
# terminal and to tests/output/gates/<gate>.log; the summary names each gate's time, and ends
# with the tail of every failed gate's log so that a CI page showing only the end shows why.
set -uo pipefail
cd "$(dirname "$0")/.."
logs=tests/output/gates
mkdir -p "$logs"
start=$(date +%s)
passed=0
failed=()
summary=()
for gate in "$@"; do
    echo "=== make $gate"
    began=$(date +%s)
    if make --no-print-directory "$gate" 2>&1 | tee "$logs/$gate.log"; then
        passed=$((passed + 1))
        result=passed
    else
        failed+=("$gate")
        result=FAILED
    fi
    summary+=("$(printf '%-16s %-7s %5ss' "$gate" "$result" "$(($(date +%s) - began))")")
done
for gate in "${failed[@]}"; do
    echo "=== the end of make $gate ($logs/$gate.log)"
    tail -n 60 "$logs/$gate.log"
done
echo "=== gates"
printf '%s\n' "${summary[@]}"
echo "make test: took $(($(date +%s) - start))s${failed[*]:+; failed: ${failed[*]}}"
echo "gates: $passed passed, ${#failed[@]} failed"
[ ${#failed[@]} -eq 0 ]
