"""Flow decisions: the first packet of a flow by the network's ACL, and idle ageing.

ACL entries come from the schema transformer (`access-control-list`, one per network,
ordered, one direction each). The first entry that matches decides pass or deny; with
no match, traffic inside the network's own subnets passes and anything else is denied.
Security groups are checked after this, by `secgroups.py`, on the ports' own ACLs.
"""

from __future__ import annotations

import functools
import ipaddress
from typing import Any

PROTOCOLS = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}
FORWARD, DROP = 1, 2


# Every new flow walks the ACLs: parse each prefix once, not once per flow (room for
# the member addresses of large security groups).
network = functools.lru_cache(maxsize=65536)(ipaddress.ip_network)


def protocol_matches(want: str, proto: int) -> bool:
    """An ACL entry's protocol (a name or a number, as the config stores it) vs a flow's."""
    if want == "any":
        return True
    return (int(want) if want.isdigit() else PROTOCOLS.get(want)) == proto


def network_acl(config: dict[str, dict[str, Any]], network: str) -> list[dict[str, Any]]:
    """The entries of the network's own ACL (not its ports' security-group ACLs)."""
    for key, obj in config.items():
        if (
            key.startswith("access-control-list/")
            and obj["parent_uuid"] == network
            and "virtual_machine_interface" not in obj
        ):
            return list(obj.get("entries", []))
    return []


def _in(addr: ipaddress.IPv4Address | ipaddress.IPv6Address, cidrs: list[str]) -> bool:
    return not cidrs or any(addr in network(c) for c in cidrs)


def decide(
    entries: list[dict[str, Any]],
    subnets: list[str],
    sip: str,
    dip: str,
    proto: int,
    sport: int,
    dport: int,
) -> tuple[int, str]:
    """The flow action and why (the entry that matched, or the default)."""
    s, d = ipaddress.ip_address(sip), ipaddress.ip_address(dip)
    for i, e in enumerate(entries):
        if not protocol_matches(e.get("protocol", "any"), proto):
            continue
        if not _in(s, e.get("source") or []) or not _in(d, e.get("destination") or []):
            continue
        if proto in (6, 17):
            lo, hi = e.get("source_ports", [0, 65535])
            if not lo <= sport <= hi:
                continue
            lo, hi = e.get("destination_ports", [0, 65535])
            if not lo <= dport <= hi:
                continue
        return (FORWARD if e["action"] == "pass" else DROP), f"acl entry {i}"
    inside = any(s in network(c) for c in subnets) and any(d in network(c) for c in subnets)
    return (FORWARD, "same network") if inside else (DROP, "no matching rule")
