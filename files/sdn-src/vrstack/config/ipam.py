"""IP address management: which addresses of a network an object holds, and allocation.

An address in use is the key `ip/<network uuid>/<address>`; the transaction that
creates an object compares that key as absent, so two objects never hold the same
address even when two API servers allocate at once.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .fields import FieldError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass
class Slot:
    """One address an object holds or wants: holder[addr_key] inside `network`."""

    network: str  # virtual-network uuid
    holder: dict[str, Any]
    addr_key: str
    subnet_key: str | None
    path: str  # of the address field, for errors


def slots(rtype: str, obj: dict[str, Any]) -> list[Slot]:
    if rtype == "virtual-machine-interface":
        return [
            Slot(obj["virtual_network"], fip, "ip_address", "subnet_cidr", f"fixed_ips[{i}]")
            for i, fip in enumerate(obj.get("fixed_ips", []))
        ]
    if rtype == "instance-ip":
        return [Slot(obj["virtual_network"], obj, "ip_address", "subnet_cidr", "")]
    if rtype == "floating-ip":
        return [Slot(obj["floating_network"], obj, "floating_ip_address", None, "")]
    return []


def ip_key(network: str, address: str) -> str:
    return f"ip/{network}/{address}"


def claims(rtype: str, obj: dict[str, Any]) -> dict[str, str]:
    """ip key -> field path, for every address the object holds."""
    out = {}
    for s in slots(rtype, obj):
        if s.holder.get(s.addr_key):
            out[ip_key(s.network, s.holder[s.addr_key])] = _join(s.path, s.addr_key)
    return out


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def reserved(net: Network, subnet: dict[str, Any]) -> set[Address]:
    """Addresses no object may take: network, broadcast and gateway."""
    out: set[Address] = {net.network_address, ipaddress.ip_address(subnet["gateway"])}
    if net.version == 4:
        out.add(net.broadcast_address)
    return out


def subnet_for(network: dict[str, Any], slot: Slot) -> dict[str, Any]:
    """The subnet a slot's address is (or will be) in, checking what the request gave."""
    subnets: list[dict[str, Any]] = network.get("subnets", [])
    addr = slot.holder.get(slot.addr_key)
    want = slot.holder.get(slot.subnet_key) if slot.subnet_key else None
    if not subnets:
        raise FieldError(_join(slot.path, slot.addr_key), "the network has no subnets", 409)
    if want is not None:
        for sub in subnets:
            if sub["cidr"] == want:
                break
        else:
            raise FieldError(
                _join(slot.path, slot.subnet_key or ""),
                f"is not a subnet of network {network['uuid']}",
            )
    else:
        sub = subnets[0]
    if addr is not None:
        a = ipaddress.ip_address(addr)
        candidates = [sub] if want is not None else subnets
        for sub in candidates:
            net = ipaddress.ip_network(sub["cidr"])
            if a in net:
                if a in reserved(net, sub):
                    raise FieldError(
                        _join(slot.path, slot.addr_key),
                        f"{a} is reserved in {net} (network, broadcast or gateway)",
                    )
                return sub
        raise FieldError(
            _join(slot.path, slot.addr_key), f"{a} is not inside the network's subnets"
        )
    return sub


def candidates(subnet: dict[str, Any], start_at: int = 0) -> Iterator[Address]:
    """Free-looking addresses of a subnet in pool order, starting at offset `start_at`."""
    net = ipaddress.ip_network(subnet["cidr"])
    skip = reserved(net, subnet)
    pools = subnet.get("allocation_pools") or [
        {"start": str(net.network_address + 1), "end": str(net[-1])}
    ]
    ranges = [
        (int(ipaddress.ip_address(p["start"])), int(ipaddress.ip_address(p["end"]))) for p in pools
    ]
    total = sum(e - s + 1 for s, e in ranges)
    offset = start_at % total if total else 0
    for i in range(total):
        n = (offset + i) % total
        for s, e in ranges:
            if n <= e - s:
                # Of the subnet's version: ip_address(5) would be 0.0.0.5 in ::/64.
                addr = type(net.network_address)(s + n)
                if addr not in skip:
                    yield addr
                break
            n -= e - s + 1
