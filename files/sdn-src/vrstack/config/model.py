"""The config model, defined once: resource types, their fields, parents and checks.

The server validates with it, stores and indexes references from it, and serves the
OpenAPI document generated from it. Cross-field rules that a field type cannot express
(a gateway inside its subnet) are `checks` on the resource.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from .fields import (
    CIDR,
    IP,
    MAC,
    Bool,
    Enum,
    Field,
    FieldError,
    Int,
    ListOf,
    Obj,
    Range,
    Ref,
    Str,
    join,
    refs_in,
)

NAME = Str(
    doc="Name, unique among the siblings under the same parent",
    required=True,
    max_len=128,
    pattern=r"[A-Za-z0-9][A-Za-z0-9_.:-]*",
)

Check = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class Resource:
    name: str  # e.g. "virtual-network"
    doc: str
    fields: dict[str, Field]
    parent: str | None = None  # parent resource type; None: top level
    derived: bool = False  # written by the schema transformer; deleted with the parent
    checks: tuple[Check, ...] = ()
    example: dict[str, Any] = field(default_factory=dict)

    @property
    def plural(self) -> str:
        return self.name + "s"

    @property
    def ident(self) -> str:
        """CamelCase name for the OpenAPI components."""
        return "".join(p.capitalize() for p in self.name.split("-"))

    def validate(self, body: dict[str, Any]) -> dict[str, Any]:
        """Validated, normalised user fields of `body` (without name/parent)."""
        out: dict[str, Any] = Obj(fields=self.fields).check(body, "")
        for check in self.checks:
            check(out)
        return out


def _net(value: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(value)


def _addr(value: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(value)


# ---- global-config ---------------------------------------------------------------

ENCAPS = ("MPLSoUDP", "MPLSoGRE", "VXLAN")
# [0-9], not \d: the same in Python and in the document's (JSON Schema) patterns.
ROUTE_TARGET = r"target:[0-9]+:[0-9]+"


def _check_global(obj: dict[str, Any]) -> None:
    if obj.get("route_target_range") and obj["route_target_range"][0] < 1:
        raise FieldError("route_target_range[0]", "route target numbers start at 1")
    # A gateway target inside the range could be handed to a network as its own.
    low, high = obj.get("route_target_range", [0, -1])
    for i, rt in enumerate(obj.get("gateway_route_targets", [])):
        _, asn, number = rt.split(":")
        if int(asn) == obj.get("asn") and low <= int(number) <= high:
            raise FieldError(
                f"gateway_route_targets[{i}]",
                f"{rt} is inside route_target_range [{low}, {high}], which networks' own "
                "targets come from",
            )


GLOBAL_CONFIG = Resource(
    "global-config",
    "Cluster-wide settings; one object named `default`.",
    {
        "asn": Int(doc="The SDN's own BGP AS number", required=True, low=1),
        "encapsulation_priority": ListOf(
            doc="Overlay encapsulations, most preferred first",
            item=Enum(values=ENCAPS),
            min_items=1,
            max_items=3,
            unique=True,
            default=lambda: list(ENCAPS),
        ),
        "route_target_range": Range(
            doc="Route target numbers the schema transformer allocates",
            low=1,
            default=lambda: [8000000, 8999999],
        ),
        "mpls_label_range": Range(
            doc="MPLS labels each compute allocates locally",
            low=16,
            high=1048575,
            default=lambda: [16, 1048575],
        ),
        "vni_range": Range(
            doc="VXLAN network identifiers allocated per network",
            low=1,
            high=16777215,
            default=lambda: [1, 16777215],
        ),
        "gateway_route_targets": ListOf(
            doc="Route targets of the fabric's gateways: networks with `external: true` "
            "export and import them besides their own (routed to the outside)",
            item=Str(pattern=ROUTE_TARGET, max_len=32),
            max_items=16,
            unique=True,
            default=list,
        ),
    },
    checks=(_check_global,),
    example={"name": "default", "asn": 64512, "encapsulation_priority": ["MPLSoUDP", "VXLAN"]},
)

# ---- project ---------------------------------------------------------------------

PROJECT = Resource(
    "project",
    "A tenant; owns networks, policies and ports.",
    {
        "description": Str(max_len=1024),
        "keystone_id": Str(doc="The Keystone project id, when deployed with OpenStack", max_len=64),
    },
    example={"name": "demo", "description": "the demo tenant"},
)

# ---- virtual-network ---------------------------------------------------------------

POOL = Obj(
    doc="Inclusive address range handed out by IPAM",
    fields={"start": IP(required=True), "end": IP(required=True)},
)
HOST_ROUTE = Obj(fields={"prefix": CIDR(required=True), "nexthop": IP(required=True)})
DHCP = Obj(
    doc="DHCP options the vrouter agent serves on this subnet",
    fields={
        "enabled": Bool(default=True),
        "dns_servers": ListOf(item=IP(), max_items=8),
        "domain_name": Str(max_len=253, pattern=r"[A-Za-z0-9.-]*"),
        "host_routes": ListOf(item=HOST_ROUTE, max_items=32),
        "lease_time": Int(low=60, high=2**31 - 1, default=86400),
    },
    default=lambda: {"enabled": True, "lease_time": 86400},
)
SUBNET = Obj(
    fields={
        "cidr": CIDR(required=True),
        "gateway": IP(doc="Default: the first address of the subnet"),
        "allocation_pools": ListOf(item=POOL, max_items=64),
        "dhcp": DHCP,
    }
)


def _check_subnets(obj: dict[str, Any]) -> None:
    seen: list[tuple[int, Any]] = []
    for i, sub in enumerate(obj.get("subnets", [])):
        path = f"subnets[{i}]"
        net = _net(sub["cidr"])
        if net.num_addresses < 4:
            raise FieldError(path + ".cidr", "must hold at least 4 addresses")
        for j, other in seen:
            if net.overlaps(other):
                raise FieldError(path + ".cidr", f"overlaps subnets[{j}].cidr")
        seen.append((i, net))
        if "gateway" not in sub:
            sub["gateway"] = str(net.network_address + 1)
        gw = _addr(sub["gateway"])
        if gw not in net or gw in (net.network_address, net.broadcast_address):
            raise FieldError(path + ".gateway", f"must be a host address inside {net}")
        for k, pool in enumerate(sub.get("allocation_pools", [])):
            p = f"{path}.allocation_pools[{k}]"
            start, end = _addr(pool["start"]), _addr(pool["end"])
            if start not in net:
                raise FieldError(p + ".start", f"must be inside {net}")
            if end not in net:
                raise FieldError(p + ".end", f"must be inside {net}")
            if int(start) > int(end):
                raise FieldError(p, "start must not be after end")


VIRTUAL_NETWORK = Resource(
    "virtual-network",
    "An overlay network with its subnets; the schema transformer gives it a routing instance.",
    {
        "subnets": ListOf(item=SUBNET, max_items=64, default=list),
        "vni": Int(
            doc="Fixed VXLAN id; default: allocated from the global vni_range", low=1, high=16777215
        ),
        "forwarding_mode": Enum(values=("l3", "l2", "l2_l3"), default="l2_l3"),
        "external": Bool(doc="Routed to the fabric gateways (floating IP pools)", default=False),
        "network_policies": ListOf(
            doc="Attached policies, in order of precedence",
            item=Ref(target="network-policy"),
            max_items=64,
            unique=True,
            default=list,
        ),
    },
    parent="project",
    checks=(_check_subnets,),
    example={
        "name": "blue",
        "subnets": [{"cidr": "198.18.64.0/24", "dhcp": {"dns_servers": ["198.18.64.2"]}}],
        "forwarding_mode": "l2_l3",
    },
)

# ---- network-policy ----------------------------------------------------------------

ENDPOINT = Obj(
    doc="A network (by reference) or a CIDR; both absent means any",
    fields={"network": Ref(target="virtual-network"), "cidr": CIDR()},
    default=dict,
)
RULE = Obj(
    fields={
        "action": Enum(values=("pass", "deny"), required=True),
        "protocol": Enum(values=("any", "tcp", "udp", "icmp", "icmp6"), default="any"),
        "direction": Enum(
            doc="`both` also matches traffic from destination to source",
            values=("both", "forward"),
            default="both",
        ),
        "source": ENDPOINT,
        "destination": ENDPOINT,
        "source_ports": Range(high=65535, default=lambda: [0, 65535]),
        "destination_ports": Range(high=65535, default=lambda: [0, 65535]),
    }
)


def _check_rules(obj: dict[str, Any]) -> None:
    for i, rule in enumerate(obj.get("rules", [])):
        for end in ("source", "destination"):
            if "network" in rule[end] and "cidr" in rule[end]:
                raise FieldError(f"rules[{i}].{end}", "give either network or cidr, not both")
        if rule["protocol"] in ("any", "icmp", "icmp6"):
            for ports in ("source_ports", "destination_ports"):
                if rule[ports] != [0, 65535]:
                    raise FieldError(f"rules[{i}].{ports}", "ports need protocol tcp or udp")


NETWORK_POLICY = Resource(
    "network-policy",
    "Ordered rules; attached to networks, they decide traffic and route leaking between them.",
    {"rules": ListOf(item=RULE, max_items=1024, default=list)},
    parent="project",
    checks=(_check_rules,),
    example={
        "name": "web",
        "rules": [{"action": "pass", "protocol": "tcp", "destination_ports": [80, 80]}],
    },
)

# ---- security-group -----------------------------------------------------------------

UUID_PATTERN = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
# A protocol by name, or an IP protocol number (Neutron allows any).
PROTOCOL = Str(
    doc="any, tcp, udp, icmp, icmp6, or an IP protocol number 0-255",
    max_len=5,
    pattern=r"any|tcp|udp|icmp|icmp6|[0-9]{1,3}",
    default="any",
)
PROTOCOL_NUMBERS = {"tcp": 6, "udp": 17, "icmp": 1, "icmp6": 58}
SG_RULE = Obj(
    fields={
        "rule_id": Str(doc="The rule's id where it came from (Neutron's)", max_len=36),
        "direction": Enum(values=("ingress", "egress"), required=True),
        "ethertype": Enum(values=("IPv4", "IPv6"), default="IPv4"),
        "protocol": PROTOCOL,
        "port_range": Range(
            doc="Destination ports (tcp and udp only)", high=65535, default=lambda: [0, 65535]
        ),
        "remote_prefix": CIDR(doc="The other end's prefix; absent with no remote_group: any"),
        # No integrity (a plain uuid): a group names itself (Neutron's default group), and
        # a group that is gone matches no address, as Neutron drops such rules with it.
        "remote_group": Str(
            doc="UUID of a security-group: the addresses of its ports", pattern=UUID_PATTERN
        ),
    }
)


def _check_sg_rules(obj: dict[str, Any]) -> None:
    for i, rule in enumerate(obj.get("rules", [])):
        path = f"rules[{i}]"
        proto = rule["protocol"]
        if proto.isdigit():
            number = int(proto)
            if number > 255:
                raise FieldError(path + ".protocol", "IP protocol numbers are 0 to 255")
            # One spelling per protocol, so equal rules compare equal.
            names = {n: p for p, n in PROTOCOL_NUMBERS.items()}
            rule["protocol"] = proto = names.get(number, str(number))
        if proto not in ("tcp", "udp") and rule["port_range"] != [0, 65535]:
            raise FieldError(path + ".port_range", "ports need protocol tcp or udp")
        v6 = rule["ethertype"] == "IPv6"
        if (proto == "icmp" and v6) or (proto == "icmp6" and not v6):
            raise FieldError(path + ".protocol", f"{proto} does not go with {rule['ethertype']}")
        if "remote_prefix" in rule:
            if "remote_group" in rule:
                raise FieldError(path, "give either remote_prefix or remote_group, not both")
            if (_net(rule["remote_prefix"]).version == 6) != v6:
                raise FieldError(path + ".remote_prefix", f"is not an {rule['ethertype']} prefix")


SECURITY_GROUP = Resource(
    "security-group",
    "Stateful allow rules for the ports that name the group; the vrouter agent enforces "
    "them per port (egress where a flow leaves, ingress where it arrives).",
    {
        "description": Str(max_len=1024, default=""),
        "rules": ListOf(item=SG_RULE, max_items=1024, default=list),
    },
    parent="project",
    checks=(_check_sg_rules,),
    example={
        "name": "web",
        "rules": [
            {"direction": "ingress", "protocol": "tcp", "port_range": [80, 80]},
            {"direction": "egress"},
        ],
    },
)

# ---- virtual-machine-interface (port) -------------------------------------------------

FIXED_IP = Obj(
    fields={
        "ip_address": IP(doc="Default: allocated from the network's subnets"),
        "subnet_cidr": CIDR(doc="The subnet to allocate from; default: the first with room"),
    }
)

VIRTUAL_MACHINE_INTERFACE = Resource(
    "virtual-machine-interface",
    "A port: a VM's (or router's) attachment to a network.",
    {
        "virtual_network": Ref(target="virtual-network", required=True),
        "mac_address": MAC(doc="Default: a generated locally administered address"),
        "fixed_ips": ListOf(item=FIXED_IP, max_items=16, default=lambda: [{}]),
        "port_security_enabled": Bool(doc="Apply policies and anti-spoofing", default=True),
        "device_owner": Str(max_len=255, default=""),
        "device_id": Str(max_len=255, default=""),
        "virtual_router": Ref(target="virtual-router", doc="The compute the port is bound to"),
        "security_groups": ListOf(
            doc="With port security on: only what these groups allow passes; none: no "
            "group filters the port",
            item=Ref(target="security-group"),
            max_items=64,
            unique=True,
            default=list,
        ),
    },
    parent="project",
    example={"name": "vm1-eth0", "device_owner": "compute:nova", "device_id": "vm1"},
)

# ---- instance-ip / floating-ip ---------------------------------------------------------

INSTANCE_IP = Resource(
    "instance-ip",
    "An address in a network, optionally bound to a port.",
    {
        "virtual_network": Ref(target="virtual-network", required=True),
        "ip_address": IP(doc="Default: allocated from the network's subnets"),
        "subnet_cidr": CIDR(),
        "virtual_machine_interface": Ref(target="virtual-machine-interface"),
    },
    example={"name": "vm1-ip"},
)


FLOATING_IP = Resource(
    "floating-ip",
    "An address from an external network, mapped to a port's fixed address.",
    {
        "floating_network": Ref(target="virtual-network", required=True),
        "floating_ip_address": IP(doc="Default: allocated from the external network"),
        "virtual_machine_interface": Ref(target="virtual-machine-interface"),
        "fixed_ip_address": IP(),
    },
    parent="project",
    example={"name": "fip1"},
)

# ---- logical-router -------------------------------------------------------------------

ROUTER_INTERFACE = Obj(
    doc="A network the router joins (Neutron: a router interface on one of its subnets)",
    fields={
        "virtual_network": Ref(target="virtual-network", required=True),
        "subnet_cidr": CIDR(doc="Only this subnet of the network; default: all of them"),
        "port": Str(doc="Id of the interface's port where it came from (Neutron's)", max_len=36),
    },
)

LOGICAL_ROUTER = Resource(
    "logical-router",
    "A project's router: the networks of its interfaces reach each other (route leaking "
    "and ACL entries, like a policy that passes everything between them); with an "
    "external gateway, they also learn the external network's routes (floating IPs).",
    {
        "interfaces": ListOf(item=ROUTER_INTERFACE, max_items=256, unique=True, default=list),
        "external_gateway": Ref(
            target="virtual-network", doc="An external network: floating IPs' way out"
        ),
    },
    parent="project",
    example={"name": "r1"},
)

# ---- virtual-router / bgp-router ---------------------------------------------------------

VIRTUAL_ROUTER = Resource(
    "virtual-router",
    "A compute node running the vrouter agent.",
    {
        "fabric_address": IP(doc="The compute's fabric (tunnel endpoint) address", required=True),
        "datapath": Enum(values=("kernel", "user"), default="kernel"),
    },
    example={"name": "compute1", "fabric_address": "198.18.2.11"},
)

BGP_ROUTER = Resource(
    "bgp-router",
    "A control node, or an external gateway router the control nodes peer with.",
    {
        "address": IP(required=True),
        "asn": Int(required=True, low=1),
        "role": Enum(values=("control-node", "gateway"), required=True),
        "families": ListOf(
            item=Enum(values=("inet-vpn", "e-vpn", "route-target", "inet")),
            min_items=1,
            max_items=4,
            unique=True,
            default=lambda: ["inet-vpn", "route-target"],
        ),
        "port": Int(low=1, high=65535, default=179),
        "hold_time": Int(low=3, high=65535, default=90),
    },
    example={"name": "control1", "address": "198.18.1.11", "asn": 64512, "role": "control-node"},
)

SERVICE_HEALTH = Resource(
    "service-health",
    "A service's last reported state; each daemon keeps its own object up to date.",
    {
        "service": Enum(values=("api", "schema", "control", "agent", "analytics"), required=True),
        "host": Str(required=True),
        "status": Enum(values=("up", "degraded", "down"), required=True),
        "detail": Str(max_len=4096, default=""),
        "reported_at": Str(doc="RFC 3339 time of the report", max_len=40),
    },
    example={"name": "schema-ctl1", "service": "schema", "host": "ctl1", "status": "up"},
)

PORT_STATE = Resource(
    "port-state",
    "A port as the vrouter agent that has it reports it; uuid and name are the "
    "virtual-machine-interface's uuid (no reference: deleting the port is not blocked).",
    {
        "virtual_router": Str(doc="Name of the reporting virtual-router", required=True),
        "status": Enum(
            doc="up: attached to its tap and programmed; down: known but not (yet) attached",
            values=("up", "down"),
            required=True,
        ),
        "tap": Str(max_len=15, default=""),
        "detail": Str(max_len=1024, default=""),
        "reported_at": Str(doc="RFC 3339 time of the report", max_len=40),
    },
    example={
        "name": "0c0e6a5e-2f6b-4d8a-9d0e-5c1f0b7e0a11",
        "virtual_router": "compute1",
        "status": "up",
        "tap": "tap0c0e6a5e-2f",
    },
)

# ---- derived by the schema transformer ------------------------------------------------

ROUTING_INSTANCE = Resource(
    "routing-instance",
    "Derived: a network's VRF with its route target and import/export lists.",
    {
        "route_target": Str(required=True, pattern=ROUTE_TARGET),
        "import_targets": ListOf(item=Str(pattern=ROUTE_TARGET), max_items=4096, default=list),
        "export_targets": ListOf(item=Str(pattern=ROUTE_TARGET), max_items=4096, default=list),
        "vni": Int(low=1, high=16777215, required=True),
        "forwarding_mode": Enum(values=("l3", "l2", "l2_l3"), required=True),
        "subnets": ListOf(item=CIDR(), max_items=64, default=list),
    },
    parent="virtual-network",
    derived=True,
    example={
        "name": "blue",
        "route_target": "target:64512:8000001",
        "vni": 5,
        "forwarding_mode": "l2_l3",
    },
)

ACL_ENTRY = Obj(
    fields={
        "policy": Str(
            required=True,
            max_len=36,
            doc="UUID of the policy (or security group) the entry came from",
        ),
        "rule": Int(required=True, doc="Index of the rule in it"),
        "action": Enum(values=("pass", "deny"), required=True),
        "protocol": replace(PROTOCOL, required=True),
        "direction": Enum(
            doc="A port's ACL only: ingress (flows to the port) or egress (from it)",
            values=("ingress", "egress"),
        ),
        "ethertype": Enum(values=("IPv4", "IPv6"), doc="A port's ACL only"),
        # A remote group expands to its ports' addresses: room for large groups.
        "source": ListOf(item=CIDR(), max_items=16384, doc="Prefixes; empty means any"),
        "destination": ListOf(item=CIDR(), max_items=16384, doc="Prefixes; empty means any"),
        "source_network": Str(max_len=36, doc="UUID, when the rule named a network"),
        "destination_network": Str(max_len=36, doc="UUID, when the rule named a network"),
        "source_ports": Range(high=65535, required=True),
        "destination_ports": Range(high=65535, required=True),
    }
)

ACCESS_CONTROL_LIST = Resource(
    "access-control-list",
    "Derived: a network's policies flattened into ordered one-direction entries; or, "
    "with `virtual_machine_interface`, one port's security groups (entries that allow).",
    {
        "entries": ListOf(item=ACL_ENTRY, max_items=65536, default=list),
        # A plain uuid, not a reference: a derived object must not block the port's delete.
        "virtual_machine_interface": Str(
            doc="The port whose security groups these are", pattern=UUID_PATTERN
        ),
    },
    parent="virtual-network",
    derived=True,
    example={"name": "blue"},
)

RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in (
        GLOBAL_CONFIG,
        PROJECT,
        VIRTUAL_NETWORK,
        NETWORK_POLICY,
        SECURITY_GROUP,
        VIRTUAL_MACHINE_INTERFACE,
        INSTANCE_IP,
        FLOATING_IP,
        LOGICAL_ROUTER,
        VIRTUAL_ROUTER,
        BGP_ROUTER,
        SERVICE_HEALTH,
        PORT_STATE,
        ROUTING_INSTANCE,
        ACCESS_CONTROL_LIST,
    )
}
BY_PLURAL: dict[str, Resource] = {r.plural: r for r in RESOURCES.values()}


def refs_of(res: Resource, obj: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(field path, target type, uuid) for every reference in a validated object."""
    return [r for k, f in res.fields.items() for r in refs_in(f, obj.get(k), join("", k))]
