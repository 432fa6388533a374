"""Floating IPs of this compute's ports: the routes to publish and the NAT flows.

A `floating-ip` the control node pushes (with the external network's routing instance)
and whose port is placed here makes the agent publish `<floating address>/32` in the
external network's instance, with the port's own label: the control node advertises it
to every compute of that network and to the gateways, and a packet for it arrives here
on that label, in the port's VRF. Its first packet becomes a NAT flow:

- in (to the floating address): the destination becomes the fixed address; the
  reverse flow, the port's replies, gets the floating address as its source;
- out (a port with a floating IP starting a flow that its network's ACL does not allow
  by any entry, i.e. to the outside): the source becomes the floating address; the
  reverse flow, the replies, gets the fixed address back as its destination.

The port's security groups decide both (ingress in, egress out), as for any flow.
IPv4 only: the datapath's NAT rewrites IPv4 headers. The external network's routes
reach the port's VRF through the router whose gateway it is (`schema/routers.py`).

When the outside end is a port on this compute, in the external network's VRF, the
flow does not come in on the label: it starts (in) or ends (out) in the external
network's VRF, which has no route to the fixed address. Its entries then translate the
VRF (the datapath's `FL_DVRF`): after the NAT, the side toward the port routes in the
port's VRF and the side toward the outside end in the external network's.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

from .ports import Port

JSON = dict[str, Any]
NAT = 4  # VR_FLOW_NAT: forward after rewriting to the entry's NAT fields


@dataclass(frozen=True)
class Fip:
    address: str  # the floating address
    fixed: str  # the port's address it stands for
    port: str  # the port's id
    instance: str  # the external network's routing instance
    port_instance: str = ""  # the port's own routing instance


@dataclass(frozen=True)
class NatPlan:
    """How to install a floating IP's flow: the inside ends for the security groups,
    the forward entry's NAT fields, and the reverse entry's addresses and NAT fields."""

    fip: Fip
    inbound: bool
    forward_nat: JSON
    reverse_sip: str
    reverse_dip: str
    reverse_nat: JSON
    # With the outside end a local port in the external network's instance: the
    # instance the forward entry routes in after the NAT, the reverse entry's own
    # instance and the one it routes in. "": no translation (the flow's own VRF).
    forward_to: str = ""
    reverse_in: str = ""
    reverse_to: str = ""


def floating_ips(config: dict[str, JSON], ports: dict[str, Port]) -> dict[str, Fip]:
    """The floating IPs of the placed `ports`, by floating address."""
    instance_of = {
        obj["parent_uuid"]: ":".join(obj["fq_name"])
        for key, obj in config.items()
        if key.startswith("routing-instance/")
    }
    out: dict[str, Fip] = {}
    for key, obj in sorted(config.items()):
        if not key.startswith("floating-ip/"):
            continue
        port = ports.get(obj.get("virtual_machine_interface", ""))
        address, fixed = obj.get("floating_ip_address", ""), obj.get("fixed_ip_address", "")
        instance = instance_of.get(obj.get("floating_network", ""))
        if port is None or not instance or fixed not in port.ips:
            continue
        if ipaddress.ip_address(address).version != 4:
            continue  # no IPv6 NAT in the datapath
        out[address] = Fip(address, fixed, port.id, instance, port.instance)
    return out


def _local_outside(fip: Fip, end: Port | None) -> bool:
    """Whether `end`, the outside end of a floating IP's flow, is a port here in the
    external network's instance (and not the floating IP's own port's)."""
    return (
        end is not None
        and bool(fip.port_instance)
        and end.instance == fip.instance != fip.port_instance
    )


def plan(
    fips: dict[str, Fip],
    sender: Port | None,
    sip: str,
    dip: str,
    acl_why: str,
    receiver: Port | None = None,
) -> NatPlan | None:
    """The NAT of a new flow, or None when no floating IP is involved. `sender` and
    `receiver` are the local ports that sent it and that have its destination address
    (None: not here); `acl_why` is why the sender's network's ACL decided as it did
    ("no matching rule" when no entry named the flow)."""
    fip = fips.get(dip)
    if fip is not None:
        local = _local_outside(fip, sender)
        return NatPlan(
            fip,
            inbound=True,
            forward_nat={"FL_NAT_DIP": ipaddress.ip_address(fip.fixed)},
            reverse_sip=fip.fixed,
            reverse_dip=sip,
            reverse_nat={"FL_NAT_SIP": ipaddress.ip_address(fip.address)},
            forward_to=fip.port_instance if local else "",
            reverse_in=fip.port_instance if local else "",
            reverse_to=fip.instance if local else "",
        )
    if sender is None or acl_why != "no matching rule":
        return None
    fip = next((f for f in fips.values() if f.port == sender.id and f.fixed == sip), None)
    if fip is None:
        return None
    local = _local_outside(fip, receiver)
    return NatPlan(
        fip,
        inbound=False,
        forward_nat={"FL_NAT_SIP": ipaddress.ip_address(fip.address)},
        reverse_sip=dip,
        reverse_dip=fip.address,
        reverse_nat={"FL_NAT_DIP": ipaddress.ip_address(fip.fixed)},
        forward_to=fip.instance if local else "",
        reverse_in=fip.instance if local else "",
        reverse_to=fip.port_instance if local else "",
    )
