"""Pure compilation of logical routers: which networks they join, and the ACL entries.

A router joins the networks of its interfaces as a policy passing everything between
them would: each imports the others' route targets, and each network's ACL gets, for
every other network on the router, a `pass` entry each way between their prefixes (the
interface's subnet, or all the network's subnets). Policy entries come first, so a
policy's `deny` between two networks still drops their flows. A router's external
gateway gives its networks the external network's routes (one way: the external network
learns only floating addresses), for the replies of floating-IP flows; no entry lets
their private addresses out (there is no source NAT for ports without a floating IP).
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]
ANY_PORTS = [0, 65535]


def _prefixes(itf: JSON, networks: dict[str, JSON]) -> list[str]:
    if "subnet_cidr" in itf:
        return [itf["subnet_cidr"]]
    net = networks.get(itf["virtual_network"], {})
    return [s["cidr"] for s in net.get("subnets", [])]


def joined(routers: dict[str, JSON], networks: dict[str, JSON]) -> dict[str, set[str]]:
    """Network uuid -> the other networks that share a router with it (both known)."""
    out: dict[str, set[str]] = {}
    for router in routers.values():
        nets = {i["virtual_network"] for i in router.get("interfaces", [])} & set(networks)
        for uid in nets:
            out.setdefault(uid, set()).update(nets - {uid})
    return out


def gateways(routers: dict[str, JSON], networks: dict[str, JSON]) -> dict[str, set[str]]:
    """Network uuid -> the external networks of the routers it is on."""
    out: dict[str, set[str]] = {}
    for router in routers.values():
        gw = router.get("external_gateway")
        if gw not in networks:
            continue
        for itf in router.get("interfaces", []):
            if itf["virtual_network"] in networks:
                out.setdefault(itf["virtual_network"], set()).add(gw)
    return out


def router_entries(uid: str, routers: dict[str, JSON], networks: dict[str, JSON]) -> list[JSON]:
    """ACL entries of network `uid` from the routers it is on (router uuid in `policy`,
    the other interface's index in `rule`), in router uuid then interface order."""
    entries: list[JSON] = []
    for ruid in sorted(routers):
        itfs = routers[ruid].get("interfaces", [])
        mine = [i for i in itfs if i["virtual_network"] == uid]
        if not mine or uid not in networks:
            continue
        own = [p for i in mine for p in _prefixes(i, networks)]
        for n, other in enumerate(itfs):
            peer = other["virtual_network"]
            if peer == uid or peer not in networks:
                continue
            theirs = _prefixes(other, networks)
            for src, dst, src_net, dst_net in ((own, theirs, uid, peer), (theirs, own, peer, uid)):
                entries.append(
                    {
                        "policy": ruid,
                        "rule": n,
                        "action": "pass",
                        "protocol": "any",
                        "source": list(src),
                        "destination": list(dst),
                        "source_network": src_net,
                        "destination_network": dst_net,
                        "source_ports": list(ANY_PORTS),
                        "destination_ports": list(ANY_PORTS),
                    }
                )
    return entries
