"""Integrity of a `logical-router` against the networks it names (run with their state).

The field types check shapes; these rules need the referenced networks: an interface
is on an internal network (an external one is the router's `external_gateway`), names
one of that network's subnets when it names one, and the router's subnets do not overlap
(the networks would route to each other, so an address must say which one it is in).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from .fields import FieldError

JSON = dict[str, Any]


def check_router(router: JSON, networks: dict[str, JSON]) -> None:
    """Raise a 409 FieldError naming the field; `networks` are the referenced ones."""
    gateway = router.get("external_gateway")
    if gateway is not None and not networks[gateway].get("external"):
        raise FieldError("external_gateway", "must be an external network", 409)
    seen: list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network, str]] = []
    for i, itf in enumerate(router.get("interfaces", [])):
        path = f"interfaces[{i}]"
        net = networks[itf["virtual_network"]]
        if net.get("external"):
            raise FieldError(
                path + ".virtual_network",
                "is an external network: make it the router's external_gateway",
                409,
            )
        cidrs = [s["cidr"] for s in net.get("subnets", [])]
        if "subnet_cidr" in itf:
            if itf["subnet_cidr"] not in cidrs:
                raise FieldError(
                    path + ".subnet_cidr", f"is not a subnet of network {net['uuid']}", 409
                )
            cidrs = [itf["subnet_cidr"]]
        for cidr in cidrs:
            mine = ipaddress.ip_network(cidr)
            for other_net, other, where in seen:
                if other_net != net["uuid"] and mine.overlaps(other):
                    raise FieldError(
                        path + ".virtual_network",
                        f"subnet {mine} overlaps {other} of {where}: a router cannot join them",
                        409,
                    )
            seen.append((net["uuid"], mine, path))
