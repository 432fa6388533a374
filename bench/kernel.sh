#!/bin/bash
# vrouter.ko against the kernel's own VXLAN (a figure, not a test): TCP
# throughput and UDP packets/s VM namespace to VM namespace across the two
# qemu TCG computes of tools/kvm.py, first through vrouter.ko with MPLSoUDP,
# then through Linux VXLAN + bridge between the same namespaces.  Needs root.
#   bench/kernel.sh [SECONDS] [--rounds N] [--modes M,M] [--no-userspace]
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export PATH="$repo/.venv/bin:$PATH"
python bench/kernel_bench.py "$@"
