"""ARP and DHCP frames built by the agent, read back by scapy (an independent parser)."""

from __future__ import annotations

import ipaddress

from scapy.layers.dhcp import BOOTP, DHCP
from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import ARP, Ether

from vrstack.agent import packets
from vrstack.agent.packets import Lease

VM_MAC = "02:00:c6:12:0a:03"
ROUTER = "00:00:5e:00:01:00"


def discover(kind: str = "discover", requested: str = "") -> bytes:
    opts: list[object] = [("message-type", kind)]
    if requested:
        opts.append(("requested_addr", requested))
    pkt = (
        Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff")
        / IP(src="0.0.0.0", dst="255.255.255.255")
        / UDP(sport=68, dport=67)
        / BOOTP(chaddr=bytes.fromhex(VM_MAC.replace(":", "")), xid=0x1234ABCD)
        / DHCP(options=[*opts, "end"])
    )
    return bytes(pkt)


def test_arp_request_and_reply() -> None:
    req_frame = bytes(
        Ether(src=VM_MAC, dst="ff:ff:ff:ff:ff:ff")
        / ARP(op=1, hwsrc=VM_MAC, psrc="198.18.10.3", pdst="198.18.10.1")
    )
    req = packets.parse_arp_request(req_frame)
    assert req is not None and (req.sender_ip, req.target_ip) == ("198.18.10.3", "198.18.10.1")
    reply = Ether(packets.arp_reply(req, ROUTER))
    assert reply[Ether].dst == VM_MAC and reply[Ether].src == ROUTER
    arp = reply[ARP]
    assert (arp.op, arp.hwsrc, arp.psrc) == (2, ROUTER, "198.18.10.1")
    assert (arp.hwdst, arp.pdst) == (VM_MAC, "198.18.10.3")
    # a reply is not a request; a short frame is nothing
    assert packets.parse_arp_request(bytes(reply)) is None
    assert packets.parse_arp_request(req_frame[:30]) is None


def test_dhcp_offer_carries_the_lease() -> None:
    req = packets.parse_dhcp(discover())
    assert req is not None
    assert (req.xid, req.chaddr, req.msg_type) == (0x1234ABCD, VM_MAC, packets.DISCOVER)
    lease = Lease(
        address="198.18.10.3",
        subnet=ipaddress.IPv4Network("198.18.10.0/24"),
        gateway="198.18.10.1",
        dns=("198.18.10.2",),
        domain="demo.example",
        lease_time=3600,
        host_routes=(("198.19.0.0/16", "198.18.10.254"),),
    )
    frame = Ether(packets.dhcp_reply(req, packets.OFFER, lease, ROUTER))
    assert frame[Ether].dst == VM_MAC
    ip = frame[IP]
    assert ip.src == "198.18.10.1" and ip.dst == "255.255.255.255"
    assert packets.ip_checksum(bytes(frame)[14:34]) == 0  # a valid header sums to 0xffff
    again = IP(bytes(ip))
    del again.chksum
    assert IP(bytes(again)).chksum == ip.chksum  # scapy computes the same checksum
    assert (frame[UDP].sport, frame[UDP].dport) == (67, 68)
    bootp = frame[BOOTP]
    assert bootp.op == 2 and bootp.xid == 0x1234ABCD and bootp.yiaddr == "198.18.10.3"
    assert bootp.chaddr[:6] == bytes.fromhex(VM_MAC.replace(":", ""))
    opts = {o[0]: o[1:] for o in frame[DHCP].options if isinstance(o, tuple)}
    assert opts["message-type"] == (2,)
    assert opts["server_id"] == ("198.18.10.1",)
    assert opts["subnet_mask"] == ("255.255.255.0",)
    assert opts["router"] == ("198.18.10.1",)
    assert opts["name_server"] == ("198.18.10.2",)
    assert opts["domain"] == (b"demo.example",)
    assert opts["lease_time"] == (3600,)
    assert "classless_static_routes" in opts


def test_dhcp_request_and_garbage() -> None:
    req = packets.parse_dhcp(discover("request", requested="198.18.10.9"))
    assert req is not None and req.msg_type == packets.REQUEST
    assert req.requested_ip == "198.18.10.9"
    assert packets.parse_dhcp(discover()[:200]) is None
    not_dhcp = bytes(Ether() / IP() / UDP(sport=1000, dport=67) / (b"\x00" * 300))
    assert packets.parse_dhcp(not_dhcp) is None
    assert packets.parse_pkt0(b"\x00" * 10) is None
    t = packets.parse_pkt0(packets.inject(7, discover()))
    assert t is not None and (t.vif, t.reason) == (7, packets.TRAP_INJECT)
