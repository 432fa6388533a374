"""Neutron resources (API dicts) -> config API bodies: pure functions, one place.

Naming: Neutron names are free text and not unique, so config objects are named by
their Neutron id (which is also their config uuid). A Neutron project becomes a config
`project` whose uuid and name are derived from the project id (the routing instance of
network N in project P is then `<project uuid>:<N>:<N>`; the agent finds it by N).
"""

from __future__ import annotations

import ipaddress
import uuid
from typing import Any

JSON = dict[str, Any]
# Neutron's own ports for routers, DHCP and floating IPs: their addresses are the
# gateway, a service address or a floating address, none of them a VM's port.
SERVICE_OWNER_PREFIX = "network:"
# Marks the config projects this mapping made: the resync deletes only inside them.
PROJECT_DESCRIPTION = "Neutron project (vrstack ML2 driver)"
_NS = uuid.UUID("6f1ed3a6-4b0e-4a55-9a2e-7c1d1d0b7a11")  # fixed: ids must never change


class Unsupported(ValueError):
    """A Neutron value the config model cannot hold; the message names the field."""


def project_uuid(project_id: str) -> str:
    """The config project's uuid: Keystone's id when it is one, else derived from it."""
    try:
        return str(uuid.UUID(project_id))
    except ValueError:
        return str(uuid.uuid5(_NS, project_id))


def project_body(project_id: str) -> JSON:
    uid = project_uuid(project_id)
    return {
        "uuid": uid,
        "name": uid,
        "keystone_id": project_id[:64],
        "description": PROJECT_DESCRIPTION,
    }


def check_subnet(subnet: JSON) -> None:
    """Refuse what the config model cannot express (Neutron's precommit calls this)."""
    net = ipaddress.ip_network(subnet["cidr"], strict=False)
    if net.num_addresses < 4:
        raise Unsupported(f"subnet cidr {net}: vrstack needs at least 4 addresses")
    if not subnet.get("gateway_ip"):
        raise Unsupported(
            "subnet gateway_ip: vrstack networks need a gateway (the agent answers on it)"
        )
    if len(subnet.get("dns_nameservers") or []) > 8:
        raise Unsupported("subnet dns_nameservers: at most 8")


def subnet_entry(subnet: JSON) -> JSON:
    pools = [{"start": p["start"], "end": p["end"]} for p in subnet.get("allocation_pools") or []]
    return {
        "cidr": str(ipaddress.ip_network(subnet["cidr"], strict=False)),
        "gateway": subnet["gateway_ip"],
        "allocation_pools": pools,
        "dhcp": {
            "enabled": bool(subnet.get("enable_dhcp", True)),
            "dns_servers": list(subnet.get("dns_nameservers") or []),
            "host_routes": [
                {"prefix": r["destination"], "nexthop": r["nexthop"]}
                for r in subnet.get("host_routes") or []
            ],
        },
    }


def network_body(network: JSON, subnets: list[JSON]) -> JSON:
    """A virtual-network with the given Neutron subnets (those of this network only)."""
    return {
        "uuid": network["id"],
        "name": network["id"],
        "parent_uuid": project_uuid(network["project_id"]),
        "external": bool(network.get("router:external")),
        "subnets": [
            subnet_entry(s)
            for s in sorted(subnets, key=lambda s: s["id"])
            if s["network_id"] == network["id"]
        ],
    }


def is_service_port(port: JSON) -> bool:
    return str(port.get("device_owner") or "").startswith(SERVICE_OWNER_PREFIX)


# ---- security groups ----------------------------------------------------------------

# Neutron's protocol names (neutron_lib.constants.IP_PROTOCOL_MAP) -> numbers; the
# config API stores tcp, udp, icmp and icmp6 by name and any other protocol by number.
PROTOCOL_NUMBERS = {
    "ah": 51, "dccp": 33, "egp": 8, "esp": 50, "gre": 47, "hopopt": 0, "icmp": 1, "igmp": 2,
    "ip": 0, "ipip": 4, "ipv6-encap": 41, "ipv6-frag": 44, "ipv6-icmp": 58, "icmpv6": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "ipv6-route": 43, "ospf": 89, "pgm": 113, "rsvp": 46,
    "sctp": 132, "tcp": 6, "udp": 17, "udplite": 136, "vrrp": 112,
}  # fmt: skip
_NAMES = {6: "tcp", 17: "udp", 1: "icmp", 58: "icmp6"}
# Ports with port security on and no group: Neutron lets nothing through, which the
# config API expresses as one group without rules (a port with no group is unfiltered).
NO_RULE_NAME = "no-rule"


def _protocol(rule: JSON) -> str:
    """The config API's protocol for a Neutron rule (raises Unsupported)."""
    proto = rule.get("protocol")
    if proto in (None, "", "any"):
        return "any"
    text = str(proto).lower()
    number = int(text) if text.isdigit() else PROTOCOL_NUMBERS.get(text)
    if number is None or not 0 <= number <= 255:
        raise Unsupported(f"security group rule protocol {proto!r}: not an IP protocol")
    if number == 1 and rule.get("ethertype") == "IPv6":
        number = 58  # Neutron accepts icmp with IPv6 and means ICMPv6
    return _NAMES.get(number, str(number))


def check_sg_rule(rule: JSON) -> None:
    """Refuse a rule the agent cannot enforce (Neutron's precommit calls this)."""
    if rule.get("remote_address_group_id"):
        raise Unsupported("security group rule remote_address_group_id: not supported by vrstack")
    proto = _protocol(rule)
    ports = (rule.get("port_range_min"), rule.get("port_range_max"))
    if ports != (None, None) and proto not in ("tcp", "udp"):
        raise Unsupported(
            f"security group rule port_range_min/port_range_max with protocol {proto}: "
            "vrstack matches ports for tcp and udp only (not ICMP type or code)"
        )


def check_security_group(group: JSON) -> None:
    if group.get("stateful") is False:
        raise Unsupported("security group stateful=false: vrstack's groups are always stateful")
    for rule in group.get("security_group_rules") or []:
        check_sg_rule(rule)


def sg_rule_entry(rule: JSON) -> JSON:
    entry: JSON = {
        "rule_id": rule["id"],
        "direction": rule["direction"],
        "ethertype": rule.get("ethertype") or "IPv4",
        "protocol": _protocol(rule),
        "port_range": [0, 65535],
    }
    low, high = rule.get("port_range_min"), rule.get("port_range_max")
    if low is not None or high is not None:
        low = 0 if low is None else int(low)
        entry["port_range"] = [low, low if high is None else int(high)]
    if rule.get("remote_ip_prefix"):
        entry["remote_prefix"] = str(ipaddress.ip_network(rule["remote_ip_prefix"], strict=False))
    elif rule.get("remote_group_id"):
        entry["remote_group"] = rule["remote_group_id"]
    return entry


def security_group_body(group: JSON) -> JSON:
    rules = sorted(group.get("security_group_rules") or [], key=lambda r: r["id"])
    return {
        "uuid": group["id"],
        "name": group["id"],
        "parent_uuid": project_uuid(group["project_id"]),
        "description": str(group.get("name") or "")[:1024],
        "rules": [sg_rule_entry(r) for r in rules],
    }


def no_rule_uuid(project_id: str) -> str:
    return str(uuid.uuid5(_NS, f"no-rule:{project_id}"))


def no_rule_body(project_id: str) -> JSON:
    return {
        "uuid": no_rule_uuid(project_id),
        "name": NO_RULE_NAME,
        "parent_uuid": project_uuid(project_id),
        "description": "ports with port security on and no security group: nothing passes",
        "rules": [],
    }


def port_groups(port: JSON) -> list[str]:
    """The groups the config API gets for a port: none with port security off (or no
    security-group extension), the no-rule group for port security on without groups."""
    if not port.get("port_security_enabled", True) or "security_groups" not in port:
        return []
    return sorted(port["security_groups"] or []) or [no_rule_uuid(port["project_id"])]


def port_body(port: JSON, virtual_router: str | None) -> JSON:
    """A virtual-machine-interface; `virtual_router` is the bound compute's, if any."""
    body: JSON = {
        "uuid": port["id"],
        "name": port["id"],
        "parent_uuid": project_uuid(port["project_id"]),
        "virtual_network": port["network_id"],
        "mac_address": port["mac_address"],
        # Neutron's IPAM picked the addresses: the config API only records them.
        "fixed_ips": [{"ip_address": ip["ip_address"]} for ip in port.get("fixed_ips") or []],
        "port_security_enabled": bool(port.get("port_security_enabled", True)),
        "device_owner": str(port.get("device_owner") or "")[:255],
        "device_id": str(port.get("device_id") or "")[:255],
        "security_groups": port_groups(port),
    }
    if virtual_router:
        body["virtual_router"] = virtual_router
    return body


# Optional references a write may drop (a port unbound, a gateway cleared, a floating IP
# let go of its port): an object still holding one we no longer send differs.
CLEARABLE = ("virtual_router", "external_gateway", "virtual_machine_interface", "fixed_ip_address")


def differs(want: JSON, have: JSON) -> bool:
    """True when an existing object does not already hold every field we would write,
    or still holds an optional reference we no longer write."""
    for key, value in want.items():
        if key in ("uuid", "parent_uuid"):
            continue
        if key == "subnets":
            if [_subnet_key(s) for s in value] != [_subnet_key(s) for s in have.get(key, [])]:
                return True
        elif have.get(key) != value:
            return True
    return any(key in have and key not in want for key in CLEARABLE)


def _subnet_key(s: JSON) -> tuple[Any, ...]:
    dhcp = s.get("dhcp", {})
    return (
        s["cidr"],
        s.get("gateway"),
        tuple((p["start"], p["end"]) for p in s.get("allocation_pools", [])),
        dhcp.get("enabled", True),
        tuple(dhcp.get("dns_servers", [])),
        tuple((r["prefix"], r["nexthop"]) for r in dhcp.get("host_routes", [])),
    )


# ---- routers and floating IPs (the vrstack_l3 service plugin) -----------------------

ROUTER_INTERFACE_OWNER = "network:router_interface"


def router_interface_ports(router_id: str, ports: list[JSON]) -> list[JSON]:
    """The router's interface ports among `ports`, in a stable order."""
    mine = [
        p
        for p in ports
        if p.get("device_id") == router_id and p.get("device_owner") == ROUTER_INTERFACE_OWNER
    ]
    return sorted(mine, key=lambda p: p["id"])


def router_body(router: JSON, ports: list[JSON], subnets: dict[str, JSON]) -> JSON:
    """A `logical-router` for a Neutron router: an interface per fixed IP of its
    interface ports among `ports`; `subnets` by id gives their cidrs."""
    body: JSON = {
        "uuid": router["id"],
        "name": router["id"],
        "parent_uuid": project_uuid(router["project_id"]),
        "interfaces": [
            {
                "virtual_network": port["network_id"],
                "subnet_cidr": subnets[ip["subnet_id"]]["cidr"],
                "port": port["id"],
            }
            for port in router_interface_ports(router["id"], ports)
            for ip in port["fixed_ips"]
        ],
    }
    gateway = router.get("external_gateway_info") or {}
    if gateway.get("network_id"):
        body["external_gateway"] = gateway["network_id"]
    return body


def floating_ip_body(fip: JSON) -> JSON:
    body: JSON = {
        "uuid": fip["id"],
        "name": fip["id"],
        "parent_uuid": project_uuid(fip["project_id"]),
        "floating_network": fip["floating_network_id"],
        "floating_ip_address": fip["floating_ip_address"],
    }
    if fip.get("port_id"):
        body["virtual_machine_interface"] = fip["port_id"]
        body["fixed_ip_address"] = fip["fixed_ip_address"]
    return body
