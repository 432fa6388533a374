"""Print, as JSON, what the vrouter agent needs to know about the host's fabric link.

    vrouter-fabric-info ADDRESS GATEWAY [INTERFACE]

interface: the one holding ADDRESS (or INTERFACE when given); mac: its MAC;
gateway_mac: GATEWAY's MAC from the neighbour table, after at most three pings
when it is not there yet. Read-only apart from those pings.
"""

from __future__ import annotations

import json
import subprocess
import sys


def ip_json(*args: str) -> list[dict[str, object]]:
    res = subprocess.run(
        ["ip", "-j", *args], capture_output=True, text=True, timeout=10, check=False
    )
    if res.returncode:
        raise SystemExit(f"vrouter-fabric-info: ip {' '.join(args)}: {res.stderr.strip()}")
    return json.loads(res.stdout or "[]")


def neighbour_mac(gateway: str) -> str:
    for _attempt in range(3):
        for entry in ip_json("neigh", "show", gateway):
            if entry.get("lladdr") and entry.get("state") != ["FAILED"]:
                return str(entry["lladdr"])
        subprocess.run(
            ["ping", "-c", "1", "-W", "2", gateway], capture_output=True, timeout=10, check=False
        )
    return ""


def main() -> int:
    address, gateway = sys.argv[1], sys.argv[2]
    interface = sys.argv[3] if len(sys.argv) > 3 and sys.argv[3] else ""
    if not interface:
        holders = [d["ifname"] for d in ip_json("-4", "addr", "show", "to", f"{address}/32")]
        if not holders:
            raise SystemExit(
                f"vrouter-fabric-info: no interface holds the fabric address {address}"
            )
        interface = str(holders[0])
    link = ip_json("link", "show", "dev", interface)
    mac = str(link[0].get("address", "")) if link else ""
    out = {
        "interface": interface,
        "mac": mac,
        "gateway_mac": neighbour_mac(gateway) if gateway else "",
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
