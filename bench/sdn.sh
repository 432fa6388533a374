#!/bin/bash
# Issue 5 figures in one go: config API (ports/s and p99 under 50 clients), convergence
# (port in the API -> route in a remote agent's datapath), control node scale (simulated
# agents), and flow setup through the agent against dp-core's own inserts. Each prints its
# own baseline and ratio; the load average is printed before and after.
# Small sizes by default (a few minutes); --full for the sizes of docs/performance.md.
# Flow setup needs root (TAPs, network namespaces); it is skipped with a message otherwise.
#   bench/sdn.sh [--full]
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH"

api_ports=1000 conv_ports=200 control_runs=100x10,300x10 flows=2000
case "${1:-}" in
    --full) api_ports=3000 conv_ports=1000 control_runs=100x10,300x10,1000x10 flows=10000 ;;
    "") ;;
    *) echo "usage: bench/sdn.sh [--full]" >&2; exit 2 ;;
esac

echo "== load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores, $(date -u +%FT%TZ)"
echo "== config API: $api_ports ports, 50 clients"
python bench/config_api.py --ports "$api_ports"
echo "== convergence: $conv_ports ports"
python bench/convergence.py --ports "$conv_ports"
echo "== control node scale: $control_runs"
python bench/control_scale.py --runs "$control_runs"
echo "== flow setup: $flows flows"
if [[ $(id -u) -eq 0 ]]; then
    python bench/flow_setup.py --flows "$flows"
else
    echo "flow setup: skipped, needs root"
fi
echo "== load: $(cut -d' ' -f1-3 /proc/loadavg), $(date -u +%FT%TZ)"
