"""Pure compilation of security groups into one ACL per port, child of the port's network.

A port with port security on and at least one group gets an `access-control-list` named
`sg-<port uuid>` with `virtual_machine_interface` set: one `pass` entry per rule of its
groups, tagged ingress or egress. A remote group becomes the addresses of the ports that
name that group (of the rule's ethertype), so the ACLs change as ports come and go; a
remote group with no such port matches nothing and gives no entry. The agent treats the
entries as the only things the port may send (egress) and receive (ingress).

The ACL lives under the network because the control node already sends each agent the
ACLs of its ports' networks; a port without groups (or with port security off) has none.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]
ANY_PORTS = [0, 65535]


@dataclass(frozen=True)
class PortAcl:
    port: str  # uuid of the virtual-machine-interface
    network: str  # uuid of its virtual-network: the ACL's parent
    name: str
    acl: JSON  # the ACL's fields


def acl_name(port_uuid: str) -> str:
    return f"sg-{port_uuid}"


def members(ports: dict[str, JSON]) -> dict[str, list[str]]:
    """Group uuid -> the addresses (as host prefixes) of the ports that name it."""
    out: dict[str, list[str]] = {}
    for uid in sorted(ports):
        port = ports[uid]
        hosts = [
            str(ipaddress.ip_network(f["ip_address"]))
            for f in port.get("fixed_ips", [])
            if f.get("ip_address")
        ]
        for group in port.get("security_groups", []):
            out.setdefault(group, []).extend(hosts)
    return out


def _remote(rule: JSON, addresses: dict[str, list[str]]) -> list[str] | None:
    """The rule's remote prefixes; [] means any, None means nothing (an empty group)."""
    if "remote_prefix" in rule:
        return [rule["remote_prefix"]]
    if "remote_group" not in rule:
        return []
    version = 6 if rule["ethertype"] == "IPv6" else 4
    found = [a for a in addresses.get(rule["remote_group"], []) if _version(a) == version]
    return list(dict.fromkeys(found)) or None  # each address once, in port order


def _version(prefix: str) -> int:
    return 6 if ":" in prefix else 4


def port_entries(
    port: JSON, groups: dict[str, JSON], addresses: dict[str, list[str]]
) -> list[JSON]:
    entries: list[JSON] = []
    for guid in port.get("security_groups", []):
        group = groups.get(guid)
        if group is None:
            continue
        for i, rule in enumerate(group.get("rules", [])):
            remote = _remote(rule, addresses)
            if remote is None:
                continue
            ingress = rule["direction"] == "ingress"
            entries.append(
                {
                    "policy": guid,
                    "rule": i,
                    "action": "pass",
                    "protocol": rule["protocol"],
                    "direction": rule["direction"],
                    "ethertype": rule["ethertype"],
                    "source": remote if ingress else [],
                    "destination": [] if ingress else remote,
                    "source_ports": list(ANY_PORTS),
                    "destination_ports": list(rule.get("port_range", ANY_PORTS)),
                }
            )
    return entries


def compile_port_acls(ports: dict[str, JSON], groups: dict[str, JSON]) -> dict[str, PortAcl]:
    """Desired security-group ACLs, by port uuid."""
    addresses = members(ports)
    out: dict[str, PortAcl] = {}
    for uid, port in ports.items():
        if not port.get("port_security_enabled", True) or not port.get("security_groups"):
            continue
        acl = {"entries": port_entries(port, groups, addresses), "virtual_machine_interface": uid}
        out[uid] = PortAcl(uid, port["virtual_network"], acl_name(uid), acl)
    return out
