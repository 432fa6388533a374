"""What the operator's page shows, in one answer (`GET /overview`).

The fabric (racks, nodes, roles, which control nodes each compute should talk to) comes
from the collector's config file, written by the deploy from the fabric model; everything
else comes from what the nodes sent: their latest status (services, connections), the
VM ports and per-VRF route counts of the last `window` seconds, and the top flows.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..service.settings import Settings
from . import query

ROLES = ("controller", "database", "messaging", "control", "analytics", "compute")
UNKNOWN_RACK = "(not in the fabric)"
# A node's state is its worst service's; a node nothing came from is "silent".
_RANK = {"up": 0, "initializing": 1, "degraded": 2, "down": 3}


@dataclass(frozen=True)
class Node:
    name: str
    rack: str
    address: str
    roles: tuple[str, ...]
    control_nodes: tuple[str, ...]


@dataclass(frozen=True)
class Fabric:
    name: str
    nodes: tuple[Node, ...]


def fabric_from_settings(s: Settings) -> Fabric:
    """The config file's `fabric` section; empty when there is none."""
    data = s.data.get("fabric")
    if data is None:
        return Fabric("", ())
    if not isinstance(data, dict):
        raise s.error("fabric", "must be a mapping with name and nodes")
    for key in data:
        if key not in ("name", "nodes"):
            raise s.error(f"fabric.{key}", "unknown; fabric has name and nodes")
    name = data.get("name", "")
    if not isinstance(name, str):
        raise s.error("fabric.name", "must be a string")
    raw = data.get("nodes") or []
    if not isinstance(raw, list):
        raise s.error("fabric.nodes", "must be a list of nodes")
    nodes: list[Node] = []
    for i, item in enumerate(raw):
        path = f"fabric.nodes[{i}]"
        if not isinstance(item, dict):
            raise s.error(path, "must be a mapping with name, rack, address and roles")
        for key in item:
            if key not in ("name", "rack", "address", "roles", "control_nodes"):
                raise s.error(f"{path}.{key}", "unknown; a node has name, rack, address, roles")
        for key in ("name", "rack", "address"):
            if not isinstance(item.get(key), str) or not item[key]:
                raise s.error(f"{path}.{key}", "is required (a string)")
        try:
            ipaddress.ip_address(item["address"])
        except ValueError:
            raise s.error(f"{path}.address", "must be an IP address") from None
        lists = {}
        for key in ("roles", "control_nodes"):
            value = item.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise s.error(f"{path}.{key}", "must be a list of strings")
            lists[key] = tuple(value)
        for role in lists["roles"]:
            if role not in ROLES:
                raise s.error(f"{path}.roles", f"{role!r} is not one of {', '.join(ROLES)}")
        if item["name"] in (n.name for n in nodes):
            raise s.error(f"{path}.name", f"{item['name']} is listed twice")
        nodes.append(
            Node(
                item["name"],
                item["rack"],
                item["address"],
                lists["roles"],
                lists["control_nodes"],
            )
        )
    return Fabric(name, tuple(nodes))


Select = Callable[[dict[str, Any]], Awaitable[list[dict[str, Any]]]]


def _node_state(services: list[dict[str, Any]]) -> str:
    if not services:
        return "silent"
    worst = max((3 if s["late"] else _RANK.get(s["state"], 3) for s in services), default=0)
    return next(k for k, v in _RANK.items() if v == worst)


def _latest(rows: list[dict[str, Any]], *key: str) -> list[dict[str, Any]]:
    """The newest row per key (rows come newest first)."""
    seen: dict[tuple[Any, ...], dict[str, Any]] = {}
    for row in rows:
        seen.setdefault(tuple(row[k] for k in key), row)
    return list(seen.values())


async def build(
    fabric: Fabric,
    statuses: list[dict[str, Any]],
    alarms: list[dict[str, Any]],
    select: Select,
    window: float,
    now: float,
) -> dict[str, Any]:
    """The page's data. `statuses` as `GET /status` lists them, `select` runs a query."""
    by_name = {n.name: n for n in fabric.nodes}
    by_address = {n.address: n.name for n in fabric.nodes}
    services: dict[str, list[dict[str, Any]]] = {}
    for s in statuses:
        services.setdefault(s["source"], []).append(s)

    def node_json(name: str, node: Node | None) -> dict[str, Any]:
        mine = services.get(name, [])
        return {
            "name": name,
            "address": node.address if node else "",
            "roles": list(node.roles) if node else [],
            "state": _node_state(mine),
            "services": mine,
            "alarms": sum(1 for a in alarms if a["source"] == name),
        }

    racks: dict[str, list[dict[str, Any]]] = {}
    for n in fabric.nodes:
        racks.setdefault(n.rack, []).append(node_json(n.name, n))
    for name in sorted(services.keys() - by_name.keys()):
        racks.setdefault(UNKNOWN_RACK, []).append(node_json(name, None))

    sessions = []
    for s in statuses:
        reported = set()
        for c in s["connections"]:
            if c["type"] != "control":
                continue
            peer = by_address.get(c["name"], c["name"] if c["name"] in by_name else "")
            reported.add(peer)
            sessions.append(
                {"agent": s["source"], "peer": c["name"], "control": peer, "state": c["state"]}
            )
        # A compute's agent should talk to the control nodes the fabric paired it with.
        node = by_name.get(s["source"])
        if node and "compute" in node.roles and s["service"] == "vrstack-agent":
            for ctl in node.control_nodes:
                if ctl not in reported:
                    peer = by_name[ctl].address if ctl in by_name else ctl
                    sessions.append(
                        {"agent": s["source"], "peer": peer, "control": ctl, "state": "missing"}
                    )

    since = now - window
    ports = await select(
        {
            "table": "ports",
            "since": since,
            "sort": [{"field": "ts", "order": "desc"}],
            "limit": query.MAX_LIMIT,
        }
    )
    routes = await select(
        {
            "table": "counters",
            "select": ["source", "object", "value", "ts"],
            "where": [{"field": "name", "value": "routes"}],
            "since": since,
            "sort": [{"field": "ts", "order": "desc"}],
            "limit": query.MAX_LIMIT,
        }
    )
    flows = await select(
        {
            "table": "flows",
            "select": [
                "vrf",
                "src_ip",
                "dst_ip",
                "proto",
                "dst_port",
                "action",
                "sum(bytes)",
                "sum(packets)",
            ],
            "group_by": ["vrf", "src_ip", "dst_ip", "proto", "dst_port", "action"],
            "since": since,
            "sort": [{"field": "sum(bytes)", "order": "desc"}],
            "limit": 10,
        }
    )

    networks: dict[str, dict[str, Any]] = {}

    def network(vrf: str, name: str = "") -> dict[str, Any]:
        net = networks.setdefault(vrf, {"vrf": vrf, "network": "", "vms": [], "routes": []})
        net["network"] = net["network"] or name
        return net

    for p in sorted(_latest(ports, "source", "interface"), key=lambda p: (p["vm"], p["ip"])):
        network(p["vrf"], p["network"])["vms"].append(
            {k: p[k] for k in ("vm", "interface", "ip", "mac", "state", "source", "ts")}
        )
    for r in sorted(_latest(routes, "source", "object"), key=lambda r: r["source"]):
        network(r["object"])["routes"].append(
            {"source": r["source"], "count": int(r["value"]), "ts": r["ts"]}
        )
    for net in networks.values():
        net["network"] = net["network"] or net["vrf"].rsplit(":", 1)[0]

    return {
        "cluster": fabric.name,
        "now": now,
        "window": window,
        "racks": [
            {"name": r, "nodes": racks[r]}
            for r in sorted(racks, key=lambda r: (r == UNKNOWN_RACK, r))
        ],
        "sessions": sessions,
        "networks": [networks[v] for v in sorted(networks)],
        "flows": [
            {
                "vrf": f["vrf"],
                "src_ip": f["src_ip"],
                "dst_ip": f["dst_ip"],
                "proto": f["proto"],
                "dst_port": f["dst_port"],
                "action": f["action"],
                "bytes": f["sum(bytes)"],
                "packets": f["sum(packets)"],
            }
            for f in flows
        ],
        "alarms": alarms,
    }
