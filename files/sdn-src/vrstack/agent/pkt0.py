"""pkt0: answer what the datapath traps from VMs (ARP, DHCP).

The userspace datapath sends trapped frames from `DIR/dp.sock` to `DIR/agent.sock` (a
unix datagram socket the agent binds) and takes injected frames back on `dp.sock`.

- ARP: a VM asking for its gateway or for any other address its VRF has a route for
  (a remote VM, or another local port) gets the router MAC, so the datapath routes the
  packet; anything else is not answered.
- Flow miss: handed to the agent, which decides by ACL (`flows.py`) and installs the
  flow and its reverse; the held packets are then released by the datapath.
- DHCP: DISCOVER gets an OFFER and REQUEST an ACK with the port's address and its
  subnet's options (gateway, DNS, domain, host routes, lease time) from the
  `virtual-network` config the control node pushed; a REQUEST for another address gets
  a NAK. A port whose subnet is not known (no config yet) is not answered.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
from collections.abc import Callable
from typing import Any

from . import packets
from .packets import Lease
from .ports import Port
from .program import ROUTER_MAC

log = logging.getLogger(__name__)


class Pkt0:
    def __init__(
        self,
        directory: str,
        port_of_vif: Callable[[int], Port | None],
        lease_of: Callable[[Port], Lease | None],
        knows: Callable[[Port, str], bool],
        on_flow_miss: Callable[[packets.Trapped], None] | None = None,
    ) -> None:
        self.directory = directory
        self.port_of_vif = port_of_vif
        self.lease_of = lease_of
        self.knows = knows
        self.on_flow_miss = on_flow_miss
        self.counters = {
            "pkt0_received": 0,
            "arp_replies": 0,
            "arp_ignored": 0,
            "dhcp_offers": 0,
            "dhcp_acks": 0,
            "dhcp_naks": 0,
            "dhcp_ignored": 0,
            "pkt0_other": 0,
        }
        self.sock: socket.socket | None = None

    def open(self) -> None:
        path = os.path.join(self.directory, "agent.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.setblocking(False)

    async def run(self, stop: asyncio.Event) -> None:
        if self.sock is None:
            self.open()
        assert self.sock is not None
        loop = asyncio.get_running_loop()
        loop.add_reader(self.sock.fileno(), self._readable)
        try:
            await stop.wait()
        finally:
            loop.remove_reader(self.sock.fileno())
            self.sock.close()

    def _readable(self) -> None:
        assert self.sock is not None
        for _ in range(64):  # bounded batch per wakeup
            try:
                data = self.sock.recv(65536)
            except BlockingIOError:
                return
            self.counters["pkt0_received"] += 1
            try:
                reply = self.handle(data)
            except (ValueError, IndexError) as exc:  # a malformed frame from a VM
                log.debug("bad trapped frame", extra={"error": str(exc)})
                reply = None
            if reply is not None:
                with contextlib.suppress(OSError):
                    self.sock.sendto(reply, os.path.join(self.directory, "dp.sock"))

    def handle(self, data: bytes) -> bytes | None:
        """The pkt0 message to send back for one trapped message, if any."""
        t = packets.parse_pkt0(data)
        if t is not None and t.reason == packets.TRAP_FLOW_MISS and self.on_flow_miss:
            self.on_flow_miss(t)
            return None
        port = self.port_of_vif(t.vif) if t else None
        if t is None or port is None:
            self.counters["pkt0_other"] += 1
            return None
        if t.reason == packets.TRAP_ARP:
            return self._arp(t, port)
        if t.reason == packets.TRAP_DHCP:
            return self._dhcp(t, port)
        self.counters["pkt0_other"] += 1
        return None

    def _arp(self, t: packets.Trapped, port: Port) -> bytes | None:
        req = packets.parse_arp_request(t.frame)
        lease = self.lease_of(port)
        if req is None or req.target_ip in port.ips:
            self.counters["arp_ignored"] += 1
            return None
        gateway = lease is not None and req.target_ip == lease.gateway
        if not gateway and not self.knows(port, req.target_ip):
            self.counters["arp_ignored"] += 1
            return None
        self.counters["arp_replies"] += 1
        return packets.inject(t.vif, packets.arp_reply(req, ROUTER_MAC))

    def _dhcp(self, t: packets.Trapped, port: Port) -> bytes | None:
        req = packets.parse_dhcp(t.frame)
        lease = self.lease_of(port)
        if req is None or lease is None or req.chaddr != port.mac:
            self.counters["dhcp_ignored"] += 1
            return None
        if req.msg_type == packets.DISCOVER:
            kind, name = packets.OFFER, "dhcp_offers"
        elif req.msg_type == packets.REQUEST:
            asked = req.requested_ip or req.ciaddr
            ok = asked in ("", "0.0.0.0", lease.address)
            kind, name = (packets.ACK, "dhcp_acks") if ok else (packets.NAK, "dhcp_naks")
        else:
            self.counters["dhcp_ignored"] += 1
            return None
        self.counters[name] += 1
        return packets.inject(t.vif, packets.dhcp_reply(req, kind, lease, ROUTER_MAC))


def lease_for(port: Port, networks: list[dict[str, Any]]) -> Lease | None:
    """The port's first IPv4 address in a subnet of its network (by uuid or name)."""
    for net in networks:
        if port.network not in (net.get("uuid"), net.get("name")):
            continue
        for sub in net.get("subnets", []) or []:
            cidr = ipaddress.ip_network(sub["cidr"])
            dhcp = sub.get("dhcp") or {}
            if cidr.version != 4 or not dhcp.get("enabled", True):
                continue
            for ip in port.ips:
                if ipaddress.ip_address(ip) in cidr:
                    return Lease(
                        address=ip,
                        subnet=cidr,  # type: ignore[arg-type]
                        gateway=sub.get("gateway") or str(cidr.network_address + 1),
                        dns=tuple(dhcp.get("dns_servers", [])),
                        domain=dhcp.get("domain_name", ""),
                        lease_time=int(dhcp.get("lease_time", 86400)),
                        host_routes=tuple(
                            (r["prefix"], r["nexthop"]) for r in dhcp.get("host_routes", [])
                        ),
                    )
    return None
