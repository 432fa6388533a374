#!/bin/bash
# The FreeBSD gate (issue 9, "checks that run here"; what it shows and what it
# cannot: docs/freebsd.md). No FreeBSD host is needed:
#   - the vrouter KLD compile check and FreeBSD userland cross-builds (zig),
#   - every role played for inventories/example-freebsd with FreeBSD facts, normally
#     and in check mode; rendered files and host actions against tests/freebsd/golden/,
#     rc.d scripts, rc.conf, loader.conf, sysctl.conf validated,
#   - prechecks for that inventory, lint of the FreeBSD tests and the roles.
# Usage: scripts/freebsd-check.sh [--update-golden] [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH" ANSIBLE_CONFIG="$PWD/ansible.cfg"
start=$(date +%s)
./scripts/run-pytest.sh -p no:cacheprovider -rxX tests/freebsd "$@"
echo "freebsd-check: took $(( $(date +%s) - start ))s"
