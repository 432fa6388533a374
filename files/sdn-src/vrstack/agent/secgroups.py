"""Security groups on a new flow: the sending port's egress, the receiving port's ingress.

The schema transformer compiles each port's groups into an `access-control-list` under
the port's network with `virtual_machine_interface` set (`vrstack/schema/secgroups.py`);
the control node pushes it with the network's other ACLs. A port is under security
groups when its pushed `virtual-machine-interface` has port security on and names at
least one group: a flow it sends passes only if an egress entry allows it, a flow to it
only if an ingress entry does. Each side checks only its own local port, so with the
ports on two computes each compute checks one side. The agent installs the reverse flow
with the same action, so replies of an allowed flow pass (stateful, as in Neutron).
Ports the config does not put under groups (no groups, port security off, or a port
the config API does not know) are not checked here.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Protocol

from .flows import DROP, FORWARD, network, protocol_matches

JSON = dict[str, Any]


class HasId(Protocol):
    @property
    def id(self) -> str: ...


def _under_groups(config: dict[str, JSON], port_id: str) -> bool:
    vmi = config.get(f"virtual-machine-interface/{port_id}")
    return bool(vmi and vmi.get("port_security_enabled", True) and vmi.get("security_groups"))


def port_acl(config: dict[str, JSON], port_id: str) -> list[JSON] | None:
    """The port's security-group entries; None when the port has no such ACL (yet)."""
    for key, obj in config.items():
        if (
            key.startswith("access-control-list/")
            and obj.get("virtual_machine_interface") == port_id
        ):
            return list(obj.get("entries", []))
    return None


def allowed_by(
    entries: list[JSON], direction: str, remote: str, proto: int, dport: int
) -> int | None:
    """Index of the first entry of `direction` that allows the flow, else None.
    `remote` is the other end: the destination for egress, the source for ingress."""
    addr = ipaddress.ip_address(remote)
    ethertype = "IPv6" if addr.version == 6 else "IPv4"
    host = f"{addr}/{addr.max_prefixlen}"  # remote groups are lists of these
    for i, e in enumerate(entries):
        if e.get("direction") != direction or e.get("ethertype", "IPv4") != ethertype:
            continue
        if not protocol_matches(e.get("protocol", "any"), proto):
            continue
        prefixes = e.get("destination" if direction == "egress" else "source") or []
        if prefixes and host not in prefixes and not any(addr in network(p) for p in prefixes):
            continue
        if proto in (6, 17):
            lo, hi = e.get("destination_ports", [0, 65535])
            if not lo <= dport <= hi:
                continue
        return i
    return None


def decide(
    config: dict[str, JSON],
    sender: HasId | None,
    receiver: HasId | None,
    sip: str,
    dip: str,
    proto: int,
    dport: int,
) -> tuple[int, str]:
    """FORWARD or DROP for a flow from `sender` to `receiver` (the local ports at each
    end, None for an end that is not here), and why."""
    checks = ((sender, "egress", dip), (receiver, "ingress", sip))
    whys = []
    for port, direction, remote in checks:
        if port is None or not _under_groups(config, port.id):
            continue
        entries = port_acl(config, port.id)
        if entries is None:
            # Groups named but not compiled yet: closed until they are.
            return DROP, f"port {port.id}: security groups not compiled yet"
        hit = allowed_by(entries, direction, remote, proto, dport)
        if hit is None:
            return DROP, f"port {port.id}: no {direction} security group rule"
        whys.append(f"{direction} rule {hit} of port {port.id}")
    return FORWARD, "; ".join(whys) or "no security groups"
