"""End to end: ping and TCP between VMs on two computes over MPLSoGRE,
MPLSoUDP and VXLAN, the fabric checked packet by packet with scapy, flows
trapped to the stand-in agent on pkt0 and released (see topology.py).
"""

from __future__ import annotations

import os
import struct
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.l2 import GRE, Ether
from scapy.layers.vxlan import VXLAN

sys.path.insert(0, os.path.dirname(__file__))

from topology import (
    CMD_TIMEOUT,
    ROUTER_MAC,
    VNI,
    Compute,
    capture,
    drain,
    nsexec,
    set_encap,
    socket_in_ns,
    two_computes,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces")


@pytest.fixture(scope="module")
def fabric() -> Iterator[tuple[Compute, Compute]]:
    with two_computes() as computes:
        yield computes


# ---------------------------------------------------------------- checks

# No ping binary needed: ICMP echo over a raw socket, 3 tries, 3 s each.
PING = """
import socket, struct, sys, time
def csum(b):
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    s = (s & 0xffff) + (s >> 16)
    return ~(s + (s >> 16)) & 0xffff
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP); s.settimeout(0.5)
ok = 0
for seq in range(3):
    body = struct.pack("!BBHHH", 8, 0, 0, 0x7672, seq) + b"vrstack-e2e-ping"
    s.sendto(body[:2] + struct.pack("!H", csum(body)) + body[4:], (sys.argv[1], 0))
    end = time.monotonic() + 3
    while time.monotonic() < end:
        try:
            d, a = s.recvfrom(2048)
        except TimeoutError:
            continue
        icmp = d[(d[0] & 15) * 4:]
        if a[0] == sys.argv[1] and icmp[0] == 0 and icmp[4:8] == struct.pack("!HH", 0x7672, seq):
            ok += 1
            break
sys.exit(0 if ok == 3 else 1)
"""

TCP_SERVER = """
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 5201)); s.listen(1); s.settimeout(15)
c, _ = s.accept(); c.settimeout(15); n = 0
while n < int(sys.argv[2]):
    d = c.recv(65536)
    if not d: break
    c.sendall(d); n += len(d)
c.close()
"""

TCP_CLIENT = """
import socket, sys
size = int(sys.argv[2]); data = bytes(i % 251 for i in range(size))
c = socket.create_connection((sys.argv[1], 5201), timeout=15); c.sendall(data)
got = b""
while len(got) < size:
    d = c.recv(65536)
    if not d: break
    got += d
sys.exit(0 if got == data else 1)
"""


def inner_of(frame: Ether, encap: str) -> IP | None:
    """The overlay packet inside a fabric frame, or None if not that encap."""
    if IP not in frame:
        return None
    outer = frame[IP]
    if encap == "mpls-gre":
        if outer.proto != 47 or GRE not in frame or frame[GRE].proto != 0x8847:
            return None
        shim = bytes(frame[GRE].payload)
    elif encap == "mpls-udp":
        if UDP not in frame or frame[UDP].dport != 6635:
            return None
        shim = bytes(frame[UDP].payload)
    else:
        if UDP not in frame or frame[UDP].dport != 4789 or VXLAN not in frame:
            return None
        vx = frame[VXLAN]
        inner = Ether(bytes(vx.payload))
        assert vx.vni == VNI and vx.flags & 0x08
        assert inner.dst == ROUTER_MAC
        return inner.getlayer(IP)
    label, bos = struct.unpack(">I", shim[:4])[0] >> 12, shim[2] & 1
    assert bos == 1 and label in (101, 102, 201, 202)
    return IP(shim[4:])


@pytest.mark.parametrize("encap", ["mpls-gre", "mpls-udp", "vxlan"])
def test_vm_to_vm(fabric: tuple[Compute, Compute], encap: str) -> None:
    a, b = fabric
    set_encap(a, b, encap)
    set_encap(b, a, encap)
    assert a.agent and b.agent
    flows_before = len(a.agent.flows_installed) + len(b.agent.flows_installed)
    wire = socket_in_ns(b.ns, "fab0")
    drain(wire)
    try:
        for src, dst in ((a.vms[0], b.vms[0]), (a.vms[1], b.vms[1]), (b.vms[1], a.vms[0])):
            res = nsexec(src.ns, sys.executable, "-c", PING, dst.ip, check=False)
            assert res.returncode == 0, f"{encap}: ping {src.ip} -> {dst.ip}\n{res.stdout}"
        server = subprocess.Popen(
            [
                "ip",
                "netns",
                "exec",
                b.vms[0].ns,
                sys.executable,
                "-c",
                TCP_SERVER,
                b.vms[0].ip,
                "300000",
            ]
        )
        time.sleep(0.3)
        client = nsexec(
            a.vms[0].ns, sys.executable, "-c", TCP_CLIENT, b.vms[0].ip, "300000", check=False
        )
        server.wait(timeout=CMD_TIMEOUT)
        assert client.returncode == 0 and server.returncode == 0, f"{encap}: TCP echo failed"
        frames = capture(wire, 0.5)
    finally:
        wire.close()
    inner = [p for p in (inner_of(f, encap) for f in frames) if p is not None]
    others = [f for f in frames if IP in f and inner_of(f, encap) is None]
    vm_ips = {vm.ip for c in fabric for vm in c.vms}
    assert not others, f"{encap}: unexpected fabric traffic {others[0].summary()}"
    assert all(p.src in vm_ips and p.dst in vm_ips for p in inner)
    icmp = [p for p in inner if ICMP in p]
    tcp = [p for p in inner if TCP in p and 5201 in (p[TCP].sport, p[TCP].dport)]
    assert any(
        p[ICMP].type == 8 and p.src == "198.19.1.11" and p.dst == "198.19.1.21" for p in icmp
    )
    assert any(p[ICMP].type == 0 and p.src == "198.19.1.21" for p in icmp)
    assert len(tcp) > 50, f"{encap}: only {len(tcp)} TCP packets on the wire"
    # Each first packet went to the agent, which installed the flow.
    assert len(a.agent.flows_installed) + len(b.agent.flows_installed) >= flows_before + 8
    assert a.agent.arp_replies > 0 and b.agent.arp_replies > 0
    rows = a.cli("flow", "--list", "--json")
    assert '"action": "forward"' in rows
