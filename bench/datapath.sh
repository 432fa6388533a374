#!/bin/bash
# Datapath benchmarks (figures, not tests), each in one run on this machine:
# flow table inserts/lookups at 512k flows, route lookup and forwarding cost
# at 100k routes, route adds/s through the control socket (C and Python
# clients), and iperf3 VM-to-VM throughput over MPLSoUDP in the userspace
# datapath against kernel veth+VXLAN forwarding.  Needs root and iperf3.
#   bench/datapath.sh [SECONDS]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH"
seconds=${1:-5}
build=files/vrouter-src/build

make -s -C files/vrouter-src build/vrbench build/vrouterd
"$build/vrbench" flow 524288
"$build/vrbench" route 100000

tmp=$(mktemp -d /tmp/vrstack-dp-bench.XXXXXX)
"$build/vrouterd" --control "$tmp/control.sock" 2>"$tmp/vrouterd.log" &
pid=$!
trap 'kill "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
for _ in $(seq 50); do [[ -S $tmp/control.sock ]] && break; sleep 0.1; done
"$build/vrbench" msg "$tmp/control.sock" 100000
python bench/datapath_bench.py msg "$tmp/control.sock" 20000
python bench/datapath_bench.py throughput "$seconds"
