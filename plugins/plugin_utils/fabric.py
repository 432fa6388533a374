# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The fabric model: the one place that validates a fabric file and computes
every address, ASN, control-node pairing and range of a vrstack site.

The inventory plugin, the filters and the lab builder all read the result of
`build_model`; nothing else allocates addresses.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

try:
    import netaddr

    HAS_NETADDR = True
except ImportError:  # pragma: no cover - reported by the inventory plugin
    HAS_NETADDR = False

SUPPORTED_OS = {"debian12": "Debian 12", "freebsd14": "FreeBSD 14"}
ROLES = ("controller", "database", "messaging", "control", "analytics", "compute")
ENCAPS = ("MPLSoUDP", "MPLSoGRE", "VXLAN")
NAME_RE = re.compile(r"^[a-z][a-z0-9-]{0,62}$")
RACK_RE = re.compile(r"^[a-z][a-z0-9_]{0,30}$")

TOP_KEYS = {"plugin", "cluster", "spine", "gateway", "racks", "hosts", "vars"}
CLUSTER_KEYS = {
    "name",
    "asn",
    "ha",
    "encap_priority",
    "route_target_range",
    "mpls_label_range",
    "vni_range",
    "loopback_pool",
    "vips",
    "os",
    "sdn_tls",
    "openstack_tls",
}
SPINE_KEYS = {"name", "asn", "link_pool"}
GATEWAY_KEYS = {"name", "address", "asn", "peers", "route_target", "routed_networks", "managed"}
RACK_KEYS = {"subnet", "gateway", "tor_asn", "reserved", "uplink"}
HOST_KEYS = {"rack", "roles", "address", "loopback", "os"}

# (low, high, default) for each range a cluster hands out.
RANGES = {
    "route_target_range": (1, 4294967295, [8000000, 8999999]),
    "mpls_label_range": (16, 1048575, [16, 1048575]),
    "vni_range": (1, 16777215, [1, 16777215]),
}


class FabricError(ValueError):
    """A fabric file is wrong; the message names the file, the place and the field."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class _Checker:
    """Collects problems so an operator sees all of them in one run."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.problems: list[str] = []

    def add(self, where: str, field: str, message: str) -> None:
        self.problems.append(f"{self.source}: {where}, field '{field}': {message}")

    def raise_if_any(self) -> None:
        if self.problems:
            raise FabricError(self.problems)


def _unknown_keys(chk: _Checker, where: str, data: Mapping[str, Any], allowed: set[str]) -> None:
    for key in data:
        if key not in allowed:
            chk.add(
                where, str(key), f"unknown field; expected one of: {', '.join(sorted(allowed))}"
            )


def _mapping(chk: _Checker, where: str, field: str, value: Any, required: bool = True) -> dict:
    if value is None and not required:
        return {}
    if not isinstance(value, Mapping):
        chk.add(where, field, "must be a mapping")
        return {}
    return dict(value)


def _flag(chk: _Checker, where: str, field: str, data: Mapping, default: bool) -> bool:
    """A true/false switch; anything else is reported and the default is used."""
    value = data.get(field, default)
    if not isinstance(value, bool):
        chk.add(where, field, f"{value!r} must be true or false")
        return default
    return value


def _asn(chk: _Checker, where: str, field: str, value: Any, required: bool) -> int | None:
    if value is None:
        if required:
            chk.add(where, field, "is required (a BGP AS number, 1-4294967295)")
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 4294967295:
        chk.add(where, field, f"{value!r} is not a BGP AS number (1-4294967295)")
        return None
    return value


def _network(chk: _Checker, where: str, field: str, value: Any) -> netaddr.IPNetwork | None:
    if value is None:
        chk.add(where, field, "is required (a network in CIDR form, e.g. 198.18.1.0/24)")
        return None
    try:
        net = netaddr.IPNetwork(str(value))
    except (netaddr.AddrFormatError, ValueError, TypeError):
        chk.add(where, field, f"{value!r} is not a network in CIDR form (e.g. 198.18.1.0/24)")
        return None
    if "/" not in str(value):
        chk.add(where, field, f"{value!r} has no prefix length (e.g. {value}/24)")
        return None
    if net.ip != net.network:
        chk.add(where, field, f"{value} has host bits set; did you mean {net.cidr}?")
        return None
    return net


def _address(chk: _Checker, where: str, field: str, value: Any) -> netaddr.IPAddress | None:
    try:
        return netaddr.IPAddress(str(value))
    except (netaddr.AddrFormatError, ValueError, TypeError):
        chk.add(where, field, f"{value!r} is not an IP address")
        return None


def _usable(net: netaddr.IPNetwork, ip: netaddr.IPAddress) -> bool:
    """Inside the network and neither its network nor its broadcast address."""
    if ip not in net:
        return False
    if net.version == 4 and net.prefixlen < 31:
        return ip not in (net.network, net.broadcast)
    return True


def _range(chk: _Checker, field: str, value: Any) -> list[int]:
    low, high, default = RANGES[field]
    if value is None:
        return list(default)
    if (
        not isinstance(value, list | tuple)
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        chk.add("cluster", field, f"{value!r} must be a list of two integers [first, last]")
        return list(default)
    first, last = value
    if not low <= first <= last <= high:
        chk.add("cluster", field, f"{list(value)} must satisfy {low} <= first <= last <= {high}")
    return [first, last]


def _check_overlaps(chk: _Checker, nets: list[tuple[str, str, netaddr.IPNetwork]]) -> None:
    for i, (where_a, field_a, a) in enumerate(nets):
        for where_b, field_b, b in nets[i + 1 :]:
            if a.first <= b.last and b.first <= a.last:
                chk.add(where_b, field_b, f"{b} overlaps {where_a} {field_a} {a}")


def _parse_cluster(chk: _Checker, raw: Any) -> dict:
    data = _mapping(chk, "cluster", "cluster", raw)
    _unknown_keys(chk, "cluster", data, CLUSTER_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        chk.add("cluster", "name", f"{name!r} must match {NAME_RE.pattern}")
    ha = _flag(chk, "cluster", "ha", data, False)
    encaps = data.get("encap_priority", list(ENCAPS))
    if not isinstance(encaps, list) or not encaps:
        chk.add("cluster", "encap_priority", f"must be a non-empty list of {', '.join(ENCAPS)}")
        encaps = list(ENCAPS)
    else:
        for encap in encaps:
            if encap not in ENCAPS:
                chk.add(
                    "cluster",
                    "encap_priority",
                    f"unknown encapsulation {encap!r}; expected one of: {', '.join(ENCAPS)}",
                )
        if len(set(map(str, encaps))) != len(encaps):
            chk.add("cluster", "encap_priority", "lists an encapsulation twice")
    os_name = data.get("os", "debian12")
    if os_name not in SUPPORTED_OS:
        chk.add(
            "cluster", "os", f"unsupported OS {os_name!r}; supported: {', '.join(SUPPORTED_OS)}"
        )
    sdn_tls = _flag(chk, "cluster", "sdn_tls", data, True)
    openstack_tls = _flag(chk, "cluster", "openstack_tls", data, True)
    pool = _network(chk, "cluster", "loopback_pool", data.get("loopback_pool"))
    vips: dict[str, netaddr.IPAddress] = {}
    for vip_name, value in _mapping(chk, "cluster", "vips", data.get("vips"), False).items():
        ip = _address(chk, "cluster", f"vips.{vip_name}", value)
        if ip is not None:
            vips[str(vip_name)] = ip
    return {
        "name": name,
        "asn": _asn(chk, "cluster", "asn", data.get("asn"), required=True),
        "ha": ha,
        "encap_priority": [str(e) for e in encaps],
        "route_target_range": _range(chk, "route_target_range", data.get("route_target_range")),
        "mpls_label_range": _range(chk, "mpls_label_range", data.get("mpls_label_range")),
        "vni_range": _range(chk, "vni_range", data.get("vni_range")),
        "loopback_pool": pool,
        "vips": vips,
        "os": os_name,
        "sdn_tls": sdn_tls,
        "openstack_tls": openstack_tls,
    }


def _parse_spine(chk: _Checker, raw: Any) -> dict | None:
    if raw is None:
        return None
    data = _mapping(chk, "spine", "spine", raw)
    _unknown_keys(chk, "spine", data, SPINE_KEYS)
    name = data.get("name", "spine")
    if not isinstance(name, str) or not NAME_RE.match(name):
        chk.add("spine", "name", f"{name!r} must match {NAME_RE.pattern}")
    return {
        "name": name,
        "asn": _asn(chk, "spine", "asn", data.get("asn"), required=False),
        "link_pool": _network(chk, "spine", "link_pool", data.get("link_pool")),
    }


def _parse_gateway(chk: _Checker, raw: Any) -> dict | None:
    """The edge router that exchanges L3VPN routes with the control nodes."""
    if raw is None:
        return None
    data = _mapping(chk, "gateway", "gateway", raw)
    _unknown_keys(chk, "gateway", data, GATEWAY_KEYS)
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        chk.add("gateway", "name", f"{name!r} must match {NAME_RE.pattern}")
    address = None
    if data.get("address") is None:
        chk.add("gateway", "address", "is required (the address the control nodes peer with)")
    else:
        address = _address(chk, "gateway", "address", data["address"])
    peers = data.get("peers")
    if peers is not None and (
        not isinstance(peers, list) or not peers or not all(isinstance(p, str) for p in peers)
    ):
        chk.add("gateway", "peers", f"{peers!r} must be a non-empty list of control node names")
        peers = None
    route_target = data.get("route_target")
    if route_target is None:
        chk.add("gateway", "route_target", "is required (the number n of target:<cluster asn>:n)")
    elif (
        isinstance(route_target, bool)
        or not isinstance(route_target, int)
        or not 1 <= route_target <= 4294967295
    ):
        chk.add("gateway", "route_target", f"{route_target!r} must be an integer 1-4294967295")
        route_target = None
    nets = data.get("routed_networks", [])
    if not isinstance(nets, list):
        chk.add("gateway", "routed_networks", "must be a list of networks in CIDR form")
        nets = []
    managed = _flag(chk, "gateway", "managed", data, False)
    return {
        "managed": managed,
        "name": name,
        "address": address,
        "asn": _asn(chk, "gateway", "asn", data.get("asn"), required=True),
        "peers": peers,
        "route_target": route_target,
        "routed_networks": [
            net
            for i, value in enumerate(nets)
            if (net := _network(chk, "gateway", f"routed_networks[{i}]", value)) is not None
        ],
    }


def _parse_racks(chk: _Checker, raw: Any) -> dict[str, dict]:
    racks: dict[str, dict] = {}
    data = _mapping(chk, "racks", "racks", raw)
    if not data and not chk.problems:
        chk.add("racks", "racks", "at least one rack is required")
    for name, rack_raw in data.items():
        where = f"rack '{name}'"
        if not isinstance(name, str) or not RACK_RE.match(name):
            chk.add(where, "name", f"must match {RACK_RE.pattern}")
        rack = _mapping(chk, where, "rack", rack_raw)
        _unknown_keys(chk, where, rack, RACK_KEYS)
        subnet = _network(chk, where, "subnet", rack.get("subnet"))
        gateway = None
        if rack.get("gateway") is None:
            chk.add(where, "gateway", "is required: every rack needs a gateway (its ToR address)")
        else:
            gateway = _address(chk, where, "gateway", rack["gateway"])
            if gateway is not None and subnet is not None and not _usable(subnet, gateway):
                chk.add(where, "gateway", f"{gateway} is not a usable address of subnet {subnet}")
        reserved = rack.get("reserved", 0)
        if isinstance(reserved, bool) or not isinstance(reserved, int) or reserved < 0:
            chk.add(where, "reserved", f"{reserved!r} must be a non-negative integer")
            reserved = 0
        uplink = _flag(chk, where, "uplink", rack, True)
        racks[str(name)] = {
            "subnet": subnet,
            "gateway": gateway,
            "tor_asn": _asn(chk, where, "tor_asn", rack.get("tor_asn"), required=False),
            "reserved": reserved,
            "uplink": uplink,
        }
    return racks


def _parse_hosts(chk: _Checker, raw: Any, racks: Mapping[str, dict], default_os: str) -> dict:
    hosts: dict[str, dict] = {}
    data = _mapping(chk, "hosts", "hosts", raw)
    if not data and not chk.problems:
        chk.add("hosts", "hosts", "at least one host is required")
    for name, host_raw in data.items():
        where = f"host '{name}'"
        if not isinstance(name, str) or not NAME_RE.match(name):
            chk.add(where, "name", f"must be a host name matching {NAME_RE.pattern}")
        host = _mapping(chk, where, "host", host_raw)
        _unknown_keys(chk, where, host, HOST_KEYS)
        rack = host.get("rack")
        if rack is None:
            chk.add(where, "rack", "is required")
        elif rack not in racks:
            chk.add(where, "rack", f"unknown rack {rack!r}; defined racks: {', '.join(racks)}")
        roles = host.get("roles")
        if not isinstance(roles, list) or not roles:
            chk.add(where, "roles", f"must be a non-empty list of: {', '.join(ROLES)}")
            roles = []
        for role in roles:
            if role not in ROLES:
                chk.add(where, "roles", f"unknown role {role!r}; known roles: {', '.join(ROLES)}")
        os_name = host.get("os", default_os)
        if os_name not in SUPPORTED_OS:
            chk.add(
                where,
                "os",
                f"unsupported OS {os_name!r}; supported: "
                f"{', '.join(f'{k} ({v})' for k, v in SUPPORTED_OS.items())}",
            )
        address = None
        if host.get("address") is not None:
            address = _address(chk, where, "address", host["address"])
        loopback = None
        if host.get("loopback") is not None:
            loopback = _address(chk, where, "loopback", host["loopback"])
        hosts[str(name)] = {
            "rack": rack,
            "roles": [str(r) for r in roles],
            "os": os_name,
            "address": address,
            "loopback": loopback,
        }
    return hosts


def _spine_links(chk: _Checker, spine: dict, racks: Iterable[str]) -> dict:
    """A /31 per uplinked rack (spine side first), then one for the deploy host."""
    pool = spine["link_pool"]
    names = [*racks, "deploy"]
    if pool.size < 2 * len(names):
        chk.add(
            "spine",
            "link_pool",
            f"{pool} holds {pool.size // 2} /31 links; "
            f"{len(names)} are needed (one per rack plus the deploy host)",
        )
        return {}
    links = {}
    for i, name in enumerate(names):
        first = pool.network + 2 * i
        key = "host_ip" if name == "deploy" else "tor_ip"
        links[name] = {"spine_ip": str(first), key: str(first + 1), "prefixlen": 31}
    return links


def _assign_addresses(
    chk: _Checker, racks: dict, hosts: dict, vips: dict
) -> dict[netaddr.IPAddress, str]:
    """Hand out fabric addresses; return every address in use and what holds it."""
    taken: dict[netaddr.IPAddress, str] = {}
    for rack_name, rack in racks.items():
        if rack["gateway"] is not None:
            taken[rack["gateway"]] = f"the gateway of rack '{rack_name}'"
    # A VIP fronts the controllers' APIs and moves between controllers on one
    # segment, so it belongs to the subnet of a rack that holds a controller.
    ctl_racks = [h["rack"] for h in hosts.values() if "controller" in h["roles"]] or list(racks)
    vip_nets = {n: racks[n]["subnet"] for n in dict.fromkeys(ctl_racks) if n in racks}
    for vip_name, ip in vips.items():
        if not any(net is not None and _usable(net, ip) for net in vip_nets.values()):
            chk.add(
                "cluster",
                f"vips.{vip_name}",
                f"{ip} is not a usable address of a rack subnet with a controller "
                f"({', '.join(f'{n}: {net}' for n, net in vip_nets.items())})",
            )
        elif ip in taken:
            chk.add("cluster", f"vips.{vip_name}", f"{ip} is already {taken[ip]}")
        else:
            taken[ip] = f"VIP '{vip_name}'"
    for name, host in hosts.items():
        ip, rack = host["address"], racks.get(host["rack"])
        if ip is None or rack is None or rack["subnet"] is None:
            continue
        if not _usable(rack["subnet"], ip):
            chk.add(
                f"host '{name}'",
                "address",
                f"{ip} is outside rack '{host['rack']}' subnet {rack['subnet']}",
            )
        elif ip in taken:
            chk.add(f"host '{name}'", "address", f"{ip} is already {taken[ip]}")
        else:
            taken[ip] = f"the address of host '{name}'"
    chk.raise_if_any()
    for rack_name, rack in racks.items():
        candidates = (
            ip
            for ip in rack["subnet"].iter_hosts()
            if ip.value - rack["subnet"].first > rack["reserved"]
        )
        for name, host in hosts.items():
            if host["rack"] != rack_name or host["address"] is not None:
                continue
            host["address"] = next((ip for ip in candidates if ip not in taken), None)
            if host["address"] is None:
                chk.add(
                    f"rack '{rack_name}'",
                    "subnet",
                    f"{rack['subnet']} has no free address left for host '{name}'",
                )
                return taken
            taken[host["address"]] = f"the address of host '{name}'"
    return taken


def _assign_loopbacks(
    chk: _Checker, pool: netaddr.IPNetwork | None, hosts: dict, taken: dict
) -> None:
    """Pinned loopbacks first (each unique, none a fabric address), then the pool.
    Adds every loopback to `taken`."""
    for name, host in hosts.items():
        ip = host["loopback"]
        if ip is None:
            continue
        if ip in taken:
            chk.add(f"host '{name}'", "loopback", f"{ip} is already {taken[ip]}")
        taken[ip] = f"the loopback of host '{name}'"
    if pool is None:
        if any(h["loopback"] is None for h in hosts.values()):
            chk.add("cluster", "loopback_pool", "is required unless every host pins 'loopback'")
        return
    free = (ip for ip in pool.iter_hosts() if ip not in taken)
    for name, host in hosts.items():
        if host["loopback"] is None:
            host["loopback"] = next(free, None)
            if host["loopback"] is None:
                chk.add("cluster", "loopback_pool", f"{pool} has no address left for host '{name}'")
                return
            taken[host["loopback"]] = f"the loopback of host '{name}'"


def _check_spine_routes(chk: _Checker, spine: dict | None, racks: dict) -> None:
    """Racks reach each other only through the spine: with several racks, every
    rack needs an uplink to it."""
    if len(racks) < 2:
        return
    if spine is None:
        chk.add(
            "file",
            "spine",
            f"is required: {len(racks)} racks ({', '.join(racks)}) route to each other "
            "only through a spine",
        )
        return
    for name, rack in racks.items():
        if not rack["uplink"]:
            chk.add(
                f"rack '{name}'",
                "uplink",
                f"is false: the rack has no route to spine '{spine['name']}' and so none to "
                "the other racks; a site with several racks needs every rack uplinked",
            )


def _check_asns(
    chk: _Checker, cluster: dict, spine: dict | None, gateway: dict | None, racks: dict
) -> None:
    """The cluster, the spine, the gateway and each ToR are separate BGP speakers
    and need separate ASNs; the spine and gateway may share one only when they are
    the same router (same name)."""
    speakers: list[tuple[str, str, int | None, str, str | None]] = [
        ("cluster", "asn", cluster["asn"], "the cluster (cluster.asn)", None)
    ]
    if spine is not None:
        speakers.append(("spine", "asn", spine["asn"], f"spine '{spine['name']}'", spine["name"]))
    if gateway is not None:
        speakers.append(
            ("gateway", "asn", gateway["asn"], f"gateway '{gateway['name']}'", gateway["name"])
        )
    for name, rack in racks.items():
        speakers.append((f"rack '{name}'", "tor_asn", rack["tor_asn"], f"rack '{name}'", None))
    owners: dict[int, tuple[str, str | None]] = {}
    for where, field, asn, what, router in speakers:
        if asn is None:
            continue
        if asn not in owners:
            owners[asn] = (what, router)
            continue
        other, other_router = owners[asn]
        if router is None or router != other_router:
            chk.add(where, field, f"{asn} is already the ASN of {other}; each needs its own")


def _check_gateway(
    chk: _Checker, gateway: dict | None, cluster: dict, hosts: dict, taken: dict
) -> None:
    if gateway is None:
        return
    ip = gateway["address"]
    if ip is not None and ip in taken:
        chk.add("gateway", "address", f"{ip} is already {taken[ip]}")
    controls = [n for n, h in hosts.items() if "control" in h["roles"]]
    if gateway["peers"] is None:
        gateway["peers"] = controls
        if not controls:
            chk.add("gateway", "peers", "no host has role 'control' to peer with the gateway")
    for peer in gateway["peers"]:
        if peer not in controls:
            chk.add(
                "gateway",
                "peers",
                f"{peer!r} is not a host with role 'control'; control nodes: "
                f"{', '.join(controls) or 'none'}",
            )
    rt = gateway["route_target"]
    first, last = cluster["route_target_range"]
    if rt is not None and first <= rt <= last:
        chk.add(
            "gateway",
            "route_target",
            f"{rt} is inside cluster.route_target_range [{first}, {last}], which networks "
            "get their own route targets from; pick a number outside it",
        )
    elif rt is not None and (cluster["asn"] or 0) > 65535 and rt > 65535:
        chk.add(
            "gateway",
            "route_target",
            f"{rt} does not fit target:{cluster['asn']}:n (a 4-byte ASN leaves n 0-65535)",
        )


def _check_topology(chk: _Checker, cluster: dict, racks: dict, hosts: dict) -> None:
    controls = [n for n, h in hosts.items() if "control" in h["roles"]]
    if cluster["ha"] and len(controls) < 2:
        chk.add(
            "cluster",
            "ha",
            f"HA needs at least two hosts with role 'control'; "
            f"found {len(controls)} ({', '.join(controls) or 'none'})",
        )
    control_racks = {hosts[n]["rack"] for n in controls}
    if len(racks) > 1 and len(controls) > 1 and len(control_racks) < 2:
        chk.add(
            f"host '{controls[-1]}'",
            "rack",
            f"control nodes {', '.join(controls)} are all in rack '{control_racks.pop()}'; "
            "put one in another rack so that losing a rack leaves every compute a control node",
        )
    if not controls:
        for name, host in hosts.items():
            if "compute" in host["roles"]:
                chk.add(
                    f"host '{name}'",
                    "roles",
                    "a compute needs a control node; no host has role 'control'",
                )


def _pair_control_nodes(hosts: dict) -> None:
    """Give each compute two control nodes, in different racks where possible.
    The primary is a control node of the compute's own rack when there is one;
    primaries and sessions are spread evenly (fewest first, then by name).
    Validation has made sure every rack reaches every other through the spine."""
    controls = [n for n, h in hosts.items() if "control" in h["roles"]]
    primary = dict.fromkeys(controls, 0)
    load = dict.fromkeys(controls, 0)
    for host in hosts.values():
        host["control_nodes"] = []
        if "compute" not in host["roles"] or not controls:
            continue
        local = [c for c in controls if hosts[c]["rack"] == host["rack"]] or controls
        first = min(local, key=lambda c: (primary[c], load[c], c))
        others = [c for c in controls if c != first]
        remote = [c for c in others if hosts[c]["rack"] != hosts[first]["rack"]] or others
        chosen = [first] + ([min(remote, key=lambda c: (load[c], c))] if remote else [])
        primary[first] += 1
        for c in chosen:
            load[c] += 1
        host["control_nodes"] = chosen


def build_model(data: Any, source: str) -> dict[str, Any]:
    """Validate a fabric file's data and return the computed model (plain JSON types).

    Raises FabricError listing every problem, each naming `source`, the place and the field.
    """
    if not HAS_NETADDR:
        raise FabricError(
            [
                f"{source}: the fabric model needs the Python package netaddr "
                "on the deploy host (pip install netaddr)"
            ]
        )
    chk = _Checker(source)
    if not isinstance(data, Mapping):
        chk.add("file", "(top level)", "must be a mapping with cluster, racks and hosts")
        chk.raise_if_any()
    _unknown_keys(chk, "file", data, TOP_KEYS)
    for key in ("cluster", "racks", "hosts"):
        if key not in data:
            chk.add("file", key, "is required")
    chk.raise_if_any()

    cluster = _parse_cluster(chk, data["cluster"])
    spine = _parse_spine(chk, data.get("spine"))
    gateway = _parse_gateway(chk, data.get("gateway"))
    racks = _parse_racks(chk, data["racks"])
    hosts = _parse_hosts(chk, data["hosts"], racks, cluster["os"])
    chk.raise_if_any()

    nets = [(f"rack '{n}'", "subnet", r["subnet"]) for n, r in racks.items()]
    if cluster["loopback_pool"] is not None:
        nets.append(("cluster", "loopback_pool", cluster["loopback_pool"]))
    if spine is not None:
        nets.append(("spine", "link_pool", spine["link_pool"]))
    if gateway is not None:
        for i, net in enumerate(gateway["routed_networks"]):
            nets.append(("gateway", f"routed_networks[{i}]", net))
    _check_overlaps(chk, nets)
    _check_spine_routes(chk, spine, racks)
    _check_asns(chk, cluster, spine, gateway, racks)
    chk.raise_if_any()

    links = _spine_links(chk, spine, [n for n, r in racks.items() if r["uplink"]]) if spine else {}
    taken = _assign_addresses(chk, racks, hosts, cluster["vips"])
    _assign_loopbacks(chk, cluster["loopback_pool"], hosts, taken)
    for link in links.values():
        for ip in (link["spine_ip"], link.get("tor_ip") or link["host_ip"]):
            taken.setdefault(netaddr.IPAddress(ip), "a spine link address")
    _check_gateway(chk, gateway, cluster, hosts, taken)
    _check_topology(chk, cluster, racks, hosts)
    chk.raise_if_any()
    _pair_control_nodes(hosts)
    return _to_plain(cluster, spine, gateway, links, racks, hosts)


# The SDN APIs' ports: haproxy and the firewall use the same ones.
API_PORT, ANALYTICS_PORT = 8082, 8081
KEYSTONE_PORT = 5000


def _endpoints(vips: dict, hosts: dict, tls: bool, openstack_tls: bool) -> dict[str, Any]:
    """Where clients reach the shared services: the internal VIP when a role has
    several hosts and there are several controllers (haproxy/keepalived run on the
    controllers and hold the VIP only then), else that role's first host; the SDN
    APIs' URLs too (https unless `cluster.sdn_tls` is false), and the OpenStack APIs'
    scheme and Keystone's URL (https unless `cluster.openstack_tls` is false).
    Roles read these instead of each working it out again."""

    def members(role: str) -> list[str]:
        return [str(h["address"]) for h in hosts.values() if role in h["roles"]]

    def one(role: str) -> str | None:
        found = members(role)
        if len(found) > 1 and "internal" in vips and len(members("controller")) > 1:
            return str(vips["internal"])
        return found[0] if found else None

    def url(address: str | None, port: int, secure: bool = tls) -> str | None:
        return f"{'https' if secure else 'http'}://{address}:{port}" if address else None

    keystone = url(one("controller"), KEYSTONE_PORT, openstack_tls)

    return {
        "api": one("controller"),
        "database": one("database"),
        "messaging": members("messaging"),
        "memcached": members("controller"),
        "analytics": one("analytics"),
        "api_url": url(one("controller"), API_PORT),
        "analytics_url": url(one("analytics"), ANALYTICS_PORT),
        "openstack_scheme": "https" if openstack_tls else "http",
        "keystone_url": f"{keystone}/v3" if keystone else None,
    }


def _to_plain(
    cluster: dict, spine: dict | None, gateway: dict | None, links: dict, racks: dict, hosts: dict
) -> dict:
    return {
        "name": cluster["name"],
        "asn": cluster["asn"],
        "ha": cluster["ha"],
        "encap_priority": cluster["encap_priority"],
        "route_target_range": cluster["route_target_range"],
        "mpls_label_range": cluster["mpls_label_range"],
        "vni_range": cluster["vni_range"],
        "loopback_pool": str(cluster["loopback_pool"]) if cluster["loopback_pool"] else None,
        "vips": {k: str(v) for k, v in cluster["vips"].items()},
        "sdn_tls": cluster["sdn_tls"],
        "openstack_tls": cluster["openstack_tls"],
        "endpoints": _endpoints(
            cluster["vips"], hosts, cluster["sdn_tls"], cluster["openstack_tls"]
        ),
        "spine": None
        if spine is None
        else {
            "name": spine["name"],
            "asn": spine["asn"],
            "link_pool": str(spine["link_pool"]),
            "links": links,
        },
        "gateway": None
        if gateway is None
        else {
            "name": gateway["name"],
            "address": str(gateway["address"]),
            "asn": gateway["asn"],
            "peers": gateway["peers"],
            "route_target": f"target:{cluster['asn']}:{gateway['route_target']}",
            "routed_networks": [str(n) for n in gateway["routed_networks"]],
            "managed": gateway["managed"],
            "os": cluster["os"],  # a managed gateway's, like hosts without their own
        },
        "racks": {
            name: {
                "subnet": str(r["subnet"]),
                "prefixlen": r["subnet"].prefixlen,
                "gateway": str(r["gateway"]),
                "tor_asn": r["tor_asn"],
                "uplink": r["uplink"],
                "hosts": [h for h, v in hosts.items() if v["rack"] == name],
            }
            for name, r in racks.items()
        },
        "hosts": {
            name: {
                "rack": h["rack"],
                "roles": h["roles"],
                "os": h["os"],
                "fabric_ip": str(h["address"]),
                "prefixlen": racks[h["rack"]]["subnet"].prefixlen,
                "gateway": str(racks[h["rack"]]["gateway"]),
                "loopback_ip": str(h["loopback"]),
                "control_nodes": h["control_nodes"],
            }
            for name, h in hosts.items()
        },
    }


def host_vars(model: Mapping[str, Any], name: str) -> dict[str, Any]:
    """The `vrstack_*` host vars the inventory plugin sets for one host."""
    host = model["hosts"][name]
    rack = model["racks"][host["rack"]]
    return {
        "ansible_host": host["fabric_ip"],
        "vrstack_rack": host["rack"],
        "vrstack_roles": host["roles"],
        "vrstack_os": host["os"],
        "vrstack_fabric_ip": host["fabric_ip"],
        "vrstack_fabric_prefixlen": host["prefixlen"],
        "vrstack_fabric_cidr": rack["subnet"],
        "vrstack_fabric_gateway": host["gateway"],
        "vrstack_loopback_ip": host["loopback_ip"],
        "vrstack_bgp_asn": model["asn"],
        "vrstack_tor_asn": rack["tor_asn"],
        "vrstack_control_nodes": host["control_nodes"],
        "vrstack_route_target_range": model["route_target_range"],
        "vrstack_mpls_label_range": model["mpls_label_range"],
        "vrstack_vni_range": model["vni_range"],
        "vrstack_encap_priority": model["encap_priority"],
        "vrstack_vips": model["vips"],
        "vrstack_endpoints": model["endpoints"],
        "vrstack_gateway_peers": _gateway_peers(model, name),
    }


def _gateway_peers(model: Mapping[str, Any], name: str) -> list[dict[str, Any]]:
    """The gateways a control node holds an L3VPN session with (empty for other hosts)."""
    gw = model.get("gateway")
    if not gw or name not in gw["peers"]:
        return []
    return [{k: gw[k] for k in ("name", "address", "asn", "route_target", "routed_networks")}]


def gateway_host_vars(model: Mapping[str, Any]) -> dict[str, Any]:
    """Host vars of a `managed` gateway (a BGP router this collection configures,
    in group `gateway`, not in `vrstack`): where it is and whom it peers with."""
    gw = model["gateway"]
    return {
        "ansible_host": gw["address"],
        "vrstack_os": gw["os"],
        "vrstack_roles": [],
        "vrstack_gateway": {
            **{k: gw[k] for k in ("name", "address", "asn", "route_target", "routed_networks")},
            "cluster_asn": model["asn"],
            "neighbors": [
                {"name": p, "address": model["hosts"][p]["fabric_ip"]} for p in gw["peers"]
            ],
        },
    }


def groups(model: Mapping[str, Any]) -> dict[str, list[str]]:
    """Group name -> member hosts: every role, every rack, every OS, `vrstack`, and
    `gateway` (the gateway, when the fabric file says it is `managed`)."""
    out: dict[str, list[str]] = {"vrstack": list(model["hosts"])}
    gw = model.get("gateway")
    out["gateway"] = [gw["name"]] if gw and gw.get("managed") else []
    for role in ROLES:
        out[role] = [n for n, h in model["hosts"].items() if role in h["roles"]]
    for rack, data in model["racks"].items():
        out[f"rack_{rack}"] = list(data["hosts"])
    for os_name in SUPPORTED_OS:
        out[f"os_{os_name}"] = [n for n, h in model["hosts"].items() if h["os"] == os_name]
    return out
