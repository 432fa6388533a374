"""Frames the agent reads from and writes to pkt0: the pkt0 header, ARP, DHCP (IPv4).

Plain `struct` code: the agent parses only the fields it answers on and builds whole
replies (Ethernet, IPv4 with checksum, UDP without checksum as IPv4 allows).
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

PKT0 = struct.Struct(">IIHHI")  # vif, vrf, reason, 0, flow
TRAP_FLOW_MISS, TRAP_ARP, TRAP_DHCP, TRAP_INJECT = 1, 3, 5, 100
ETH = struct.Struct(">6s6sH")
ARP = struct.Struct(">HHBBH6s4s6s4s")
BROADCAST = b"\xff" * 6
DHCP_MAGIC = b"\x63\x82\x53\x63"
DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = range(1, 9)


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


def mac_str(raw: bytes) -> str:
    return ":".join(f"{b:02x}" for b in raw)


@dataclass
class Trapped:
    vif: int
    vrf: int
    reason: int
    flow: int
    frame: bytes


def parse_pkt0(data: bytes) -> Trapped | None:
    if len(data) < PKT0.size + ETH.size:
        return None
    vif, vrf, reason, _, flow = PKT0.unpack_from(data)
    return Trapped(vif, vrf, reason, flow, data[PKT0.size :])


def inject(vif: int, frame: bytes) -> bytes:
    """A frame for the datapath to transmit on `vif`."""
    return PKT0.pack(vif, 0, TRAP_INJECT, 0, 0) + frame


# ---- ARP ----------------------------------------------------------------------------


@dataclass
class ArpRequest:
    sender_mac: str
    sender_ip: str
    target_ip: str


def parse_arp_request(frame: bytes) -> ArpRequest | None:
    if len(frame) < ETH.size + ARP.size:
        return None
    _, _, etype = ETH.unpack_from(frame)
    htype, ptype, hlen, plen, op, sha, spa, _tha, tpa = ARP.unpack_from(frame, ETH.size)
    if etype != 0x0806 or (htype, ptype, hlen, plen, op) != (1, 0x0800, 6, 4, 1):
        return None
    return ArpRequest(
        mac_str(sha), str(ipaddress.IPv4Address(spa)), str(ipaddress.IPv4Address(tpa))
    )


def arp_reply(req: ArpRequest, mac: str) -> bytes:
    """`req.target_ip is at mac`, sent to the asker."""
    to, me = mac_bytes(req.sender_mac), mac_bytes(mac)
    body = ARP.pack(
        1,
        0x0800,
        6,
        4,
        2,
        me,
        ipaddress.IPv4Address(req.target_ip).packed,
        to,
        ipaddress.IPv4Address(req.sender_ip).packed,
    )
    return ETH.pack(to, me, 0x0806) + body


# ---- IPv4 / UDP ---------------------------------------------------------------------


def ip_checksum(header: bytes) -> int:
    total = sum(struct.unpack(f">{len(header) // 2}H", header))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def udp_frame(
    src_mac: str, dst_mac: str, src: str, dst: str, sport: int, dport: int, payload: bytes
) -> bytes:
    udp = struct.pack(">HHHH", sport, dport, 8 + len(payload), 0) + payload
    hdr = struct.pack(
        ">BBHHHBBH4s4s",
        0x45,
        0x10,
        20 + len(udp),
        0,
        0,
        64,
        17,
        0,
        ipaddress.IPv4Address(src).packed,
        ipaddress.IPv4Address(dst).packed,
    )
    hdr = hdr[:10] + struct.pack(">H", ip_checksum(hdr)) + hdr[12:]
    return ETH.pack(mac_bytes(dst_mac), mac_bytes(src_mac), 0x0800) + hdr + udp


# ---- DHCP ---------------------------------------------------------------------------


@dataclass
class DhcpRequest:
    xid: int
    chaddr: str
    msg_type: int
    requested_ip: str = ""
    ciaddr: str = "0.0.0.0"


def parse_dhcp(frame: bytes) -> DhcpRequest | None:
    """A client's BOOTREQUEST (Ethernet/IPv4/UDP 68->67), or None."""
    if len(frame) < ETH.size + 20:
        return None
    ip = frame[ETH.size :]
    ihl = (ip[0] & 0xF) * 4
    if ETH.unpack_from(frame)[2] != 0x0800 or ip[9] != 17 or len(ip) < ihl + 8 + 240:
        return None
    sport, dport = struct.unpack_from(">HH", ip, ihl)
    bootp = ip[ihl + 8 :]
    if (sport, dport) != (68, 67) or bootp[0] != 1 or bootp[236:240] != DHCP_MAGIC:
        return None
    req = DhcpRequest(
        xid=struct.unpack_from(">I", bootp, 4)[0],
        chaddr=mac_str(bootp[28:34]),
        msg_type=0,
        ciaddr=str(ipaddress.IPv4Address(bootp[12:16])),
    )
    opts, i = bootp[240:], 0
    while i < len(opts) and opts[i] != 255:
        if opts[i] == 0:
            i += 1
            continue
        if i + 1 >= len(opts):
            break
        code, n = opts[i], opts[i + 1]
        val = opts[i + 2 : i + 2 + n]
        if code == 53 and n == 1:
            req.msg_type = val[0]
        elif code == 50 and n == 4:
            req.requested_ip = str(ipaddress.IPv4Address(val))
        i += 2 + n
    return req if req.msg_type else None


@dataclass
class Lease:
    """What a port gets: its address and the options of its subnet."""

    address: str
    subnet: ipaddress.IPv4Network
    gateway: str
    dns: tuple[str, ...] = ()
    domain: str = ""
    lease_time: int = 86400
    host_routes: tuple[tuple[str, str], ...] = ()  # (prefix, nexthop)


def _opt(code: int, value: bytes) -> bytes:
    return bytes([code, len(value)]) + value


def _classless_routes(routes: tuple[tuple[str, str], ...], gateway: str) -> bytes:
    """Option 121 (RFC 3442): with it, clients ignore option 3, so the default goes in too."""
    out = b""
    for prefix, nexthop in (*routes, ("0.0.0.0/0", gateway)):
        net = ipaddress.IPv4Network(prefix)
        width = (net.prefixlen + 7) // 8
        out += bytes([net.prefixlen]) + net.network_address.packed[:width]
        out += ipaddress.IPv4Address(nexthop).packed
    return out


def dhcp_reply(req: DhcpRequest, msg_type: int, lease: Lease, server_mac: str) -> bytes:
    """OFFER/ACK (or NAK) for `req`, from the gateway address, to the client's MAC."""
    server = lease.gateway
    yiaddr = lease.address if msg_type != NAK else "0.0.0.0"
    bootp = struct.pack(">BBBBIHH", 2, 1, 6, 0, req.xid, 0, 0x8000)
    bootp += ipaddress.IPv4Address(req.ciaddr if msg_type == ACK else "0.0.0.0").packed
    bootp += ipaddress.IPv4Address(yiaddr).packed
    bootp += ipaddress.IPv4Address(server).packed + bytes(4)
    bootp += mac_bytes(req.chaddr) + bytes(10) + bytes(64) + bytes(128) + DHCP_MAGIC
    opts = _opt(53, bytes([msg_type])) + _opt(54, ipaddress.IPv4Address(server).packed)
    if msg_type != NAK:
        opts += _opt(51, struct.pack(">I", lease.lease_time))
        opts += _opt(1, lease.subnet.netmask.packed)
        opts += _opt(3, ipaddress.IPv4Address(lease.gateway).packed)
        if lease.dns:
            opts += _opt(6, b"".join(ipaddress.IPv4Address(d).packed for d in lease.dns))
        if lease.domain:
            opts += _opt(15, lease.domain.encode())
        if lease.host_routes:
            opts += _opt(121, _classless_routes(lease.host_routes, lease.gateway))
    payload = bootp + opts + b"\xff"
    return udp_frame(server_mac, req.chaddr, server, "255.255.255.255", 67, 68, payload)
