#!/bin/bash
# The datapath message fuzzer (files/vrouter-src/fuzz/fuzz_msg.c) for a counted
# number of executions (issue 11: at least 10 million), bounded in time, and a
# baseline in the same go: the same binary replaying only the seed corpus (the
# golden vectors), no mutation. Prints both counts, both exec/s and their ratio.
# Fails when the fuzzer finds a crash, stops short of the count, or runs over.
#   bench/fuzz_count.sh [RUNS] [MAX_SECONDS]        (defaults 10000000, 3600)
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
src="$repo/files/vrouter-src"
runs=${1:-10000000}
max_seconds=${2:-3600}
baseline_rounds=${FUZZ_COUNT_BASELINE_ROUNDS:-2000}
[[ $runs =~ ^[0-9]+$ && $max_seconds =~ ^[0-9]+$ ]] || {
    echo "usage: $0 [RUNS] [MAX_SECONDS] (whole numbers)" >&2
    exit 2
}

make -s -C "$src" build/fuzz_msg
fuzzer="$src/build/fuzz_msg"
seeds=("$src"/tests/vectors/*.bin)
tmp=$(mktemp -d /tmp/vrstack-fuzz-count.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
mkdir "$tmp/corpus" "$tmp/artifacts"
cp "${seeds[@]}" "$tmp/corpus/"

now() { date +%s.%N; }
rate() { python3 -c "import sys; print(f'{int(sys.argv[1]) / float(sys.argv[2]):.0f}')" "$1" "$2"; }

# Baseline: every seed executed baseline_rounds times (libFuzzer runs each file
# given as an argument -runs times), so the same code path minus the mutator.
start=$(now)
"$fuzzer" -runs="$baseline_rounds" "${seeds[@]}" >"$tmp/baseline.log" 2>&1
base_secs=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(now)")
base_execs=$((${#seeds[@]} * baseline_rounds))

# The counted run: the same flags as `make fuzz`, stopped by -runs; the
# max_total_time and timeout(1) bounds only matter on a machine far too slow.
start=$(now)
rc=0
timeout --kill-after=30 $((max_seconds + 60)) "$fuzzer" -runs="$runs" \
    -max_total_time="$max_seconds" -max_len=70000 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$tmp/artifacts/" "$tmp/corpus" >"$tmp/fuzz.log" 2>&1 || rc=$?
fuzz_secs=$(python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$start" "$(now)")
if [[ $rc -ne 0 ]]; then
    tail -n 40 "$tmp/fuzz.log" >&2
    ls "$tmp/artifacts" >&2
    echo "fuzz_count: fuzz_msg exited $rc (crash, leak or time bound) after ${fuzz_secs%.*}s" >&2
    exit 1
fi
execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$tmp/fuzz.log")
new_units=$(sed -n 's/^stat::new_units_added: *//p' "$tmp/fuzz.log")
peak_rss=$(sed -n 's/^stat::peak_rss_mb: *//p' "$tmp/fuzz.log")
if [[ -z $execs || $execs -lt $runs ]]; then
    tail -n 20 "$tmp/fuzz.log" >&2
    echo "fuzz_count: ${execs:-no} executions, fewer than the $runs asked for (time bound ${max_seconds}s)" >&2
    exit 1
fi

base_rate=$(rate "$base_execs" "$base_secs")
fuzz_rate=$(rate "$execs" "$fuzz_secs")
printf 'baseline (seed corpus only): %d executions (%d seeds x %d) in %.1f s, %d exec/s\n' \
    "$base_execs" "${#seeds[@]}" "$baseline_rounds" "$base_secs" "$base_rate"
printf 'fuzz_msg: %d executions in %.1f s, %d exec/s, %d new corpus units, peak RSS %d MB, no crash\n' \
    "$execs" "$fuzz_secs" "$fuzz_rate" "$new_units" "$peak_rss"
python3 -c "import sys; print(f'ratio fuzzing / baseline exec/s: {int(sys.argv[1]) / int(sys.argv[2]):.2f}')" \
    "$fuzz_rate" "$base_rate"
