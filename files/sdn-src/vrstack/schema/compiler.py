"""Pure compilation of intent into derived objects, one routing instance and ACL per network.

Given the current networks, policies, global config and the routing instances that
already exist, `compile_config` returns the desired fields of every network's
routing-instance and access-control-list. Allocations (route target numbers, VNIs) are
read back from the existing routing instances, which the API persists, so they stay
stable across restarts; new ones take the lowest free number in the configured range.

Route leaking: network S imports network D's route target when the policies attached
to S *and* the policies attached to D both let traffic go from S to D: for every pair
of networks, the first rule (in attachment order, then rule order) naming the pair
decides, `pass` allows, `deny` does not; direction `both` covers D to S as well.
Logical routers add to this (`routers.py`): the networks on one router import each
other's targets and get ACL entries passing everything between them, after the
policies' entries.

Routed outside: a network with `external: true` also exports and imports the global
config's `gateway_route_targets`, so the fabric's gateways receive its routes (VM and
floating addresses) and it receives the routes they announce. A network behind a router
whose external gateway is such a network imports them too (it learns the outside's
routes, where the replies of floating-IP flows go: the agent routes them in the port's
own VRF) but never exports them: its private prefixes never reach a gateway, the outside
reaches its ports only through floating IPs, and its ACL lets no flow out otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .routers import gateways, joined, router_entries

JSON = dict[str, Any]


@dataclass(frozen=True)
class Derived:
    network: str  # uuid
    name: str
    routing_instance: JSON
    acl: JSON


class NotReady(Exception):
    """The config cannot be compiled yet (no global-config, or a range is full)."""


def _free(used: set[int], low: int, high: int) -> int:
    n = low
    while n in used:
        n += 1
    if n > high:
        raise NotReady(f"no free number left in [{low}, {high}]")
    return n


def _endpoint_cidrs(end: JSON, networks: dict[str, JSON]) -> list[str]:
    if "network" in end:
        net = networks.get(end["network"])
        return [s["cidr"] for s in net.get("subnets", [])] if net else []
    return [end["cidr"]] if "cidr" in end else []


def _rules(vn: JSON, policies: dict[str, JSON]) -> Iterator[tuple[str, int, JSON]]:
    for puuid in vn.get("network_policies", []):
        policy = policies.get(puuid)
        if policy is None:
            continue
        for i, rule in enumerate(policy.get("rules", [])):
            yield puuid, i, rule


def allowed_pairs(vn: JSON, policies: dict[str, JSON]) -> set[tuple[str, str]]:
    """(source, destination) network pairs the network's own policies let through."""
    decided: dict[tuple[str, str], bool] = {}
    for _, _, rule in _rules(vn, policies):
        src = rule.get("source", {}).get("network")
        dst = rule.get("destination", {}).get("network")
        if not src or not dst or src == dst or vn["uuid"] not in (src, dst):
            continue
        pairs = [(src, dst)] + ([(dst, src)] if rule.get("direction") == "both" else [])
        for pair in pairs:
            decided.setdefault(pair, rule["action"] == "pass")
    return {pair for pair, ok in decided.items() if ok}


def acl_entries(vn: JSON, policies: dict[str, JSON], networks: dict[str, JSON]) -> list[JSON]:
    entries: list[JSON] = []
    for puuid, i, rule in _rules(vn, policies):
        src, dst = rule.get("source", {}), rule.get("destination", {})
        ports = (rule["source_ports"], rule["destination_ports"])
        directions = [(src, dst, ports)]
        if rule.get("direction") == "both":
            directions.append((dst, src, (ports[1], ports[0])))
        for a, b, (sp, dp) in directions:
            entry: JSON = {
                "policy": puuid,
                "rule": i,
                "action": rule["action"],
                "protocol": rule["protocol"],
                "source": _endpoint_cidrs(a, networks),
                "destination": _endpoint_cidrs(b, networks),
                "source_ports": list(sp),
                "destination_ports": list(dp),
            }
            if "network" in a:
                entry["source_network"] = a["network"]
            if "network" in b:
                entry["destination_network"] = b["network"]
            entries.append(entry)
    return entries


def compile_config(
    global_config: JSON | None,
    networks: dict[str, JSON],
    policies: dict[str, JSON],
    routing_instances: dict[str, JSON],
    routers: dict[str, JSON] | None = None,
) -> dict[str, Derived]:
    """Desired derived objects per network uuid (`routers`: the logical routers)."""
    routers = routers or {}
    if global_config is None:
        raise NotReady("no global-config named default yet")
    asn = global_config["asn"]
    rt_low, rt_high = global_config["route_target_range"]
    vni_low, vni_high = global_config["vni_range"]
    ri_by_net = {ri["parent_uuid"]: ri for ri in routing_instances.values()}

    # Keep every existing allocation that is still valid, then allocate the rest in uuid order.
    rt_of: dict[str, int] = {}
    vni_of: dict[str, int] = {}
    fixed_vnis = {vn["vni"] for vn in networks.values() if "vni" in vn}
    for uid in sorted(networks):
        ri = ri_by_net.get(uid)
        if ri is None:
            continue
        number = int(ri["route_target"].rsplit(":", 1)[1])
        if rt_low <= number <= rt_high and number not in rt_of.values():
            rt_of[uid] = number
        if (
            "vni" not in networks[uid]
            and vni_low <= ri["vni"] <= vni_high
            and ri["vni"] not in fixed_vnis
            and ri["vni"] not in vni_of.values()
        ):
            vni_of[uid] = ri["vni"]
    used_rt = set(rt_of.values())
    used_vni = set(vni_of.values()) | fixed_vnis
    for uid in sorted(networks):
        vn = networks[uid]
        if uid not in rt_of:
            rt_of[uid] = _free(used_rt, rt_low, rt_high)
            used_rt.add(rt_of[uid])
        if "vni" in vn:
            vni_of[uid] = vn["vni"]
        elif uid not in vni_of:
            vni_of[uid] = _free(used_vni, vni_low, vni_high)
            used_vni.add(vni_of[uid])

    def target(uid: str) -> str:
        return f"target:{asn}:{rt_of[uid]}"

    pairs = {uid: allowed_pairs(vn, policies) for uid, vn in networks.items()}
    peers, outside = joined(routers, networks), gateways(routers, networks)
    gateway_targets = set(global_config.get("gateway_route_targets", []))
    out: dict[str, Derived] = {}
    for uid, vn in networks.items():
        imports = {target(uid)}
        exports = {target(uid)}
        for src, dst in pairs[uid]:
            if src == uid and dst in networks and (src, dst) in pairs[dst]:
                imports.add(target(dst))
        imports.update(target(peer) for peer in peers.get(uid, set()) | outside.get(uid, set()))
        if vn.get("external"):
            imports |= gateway_targets
            exports |= gateway_targets
        elif any(networks[gw].get("external") for gw in outside.get(uid, set())):
            imports |= gateway_targets  # one way: see the module's docstring
        ri = {
            "route_target": target(uid),
            "import_targets": sorted(imports),
            "export_targets": sorted(exports),
            "vni": vni_of[uid],
            "forwarding_mode": vn["forwarding_mode"],
            "subnets": [s["cidr"] for s in vn.get("subnets", [])],
        }
        entries = acl_entries(vn, policies, networks) + router_entries(uid, routers, networks)
        acl = {"entries": entries}
        out[uid] = Derived(uid, vn["name"], ri, acl)
    return out
