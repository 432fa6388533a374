"""One compute of the kernel end-to-end test (root, inside a test VM with
vrouter.ko loaded).  Two VMs namespaces hang off veths whose host ends are
vifs; eth1 is the fabric, vhost0 carries the compute's own fabric address,
and a stand-in agent on pkt0 answers ARP and installs a forward flow for
every flow miss.  Addresses: 198.18.0.0/24 fabric, 198.19.1.0/24 overlay.

    compute.py setup  --me a|b          namespaces, vifs, routes, labels
    compute.py encap  --me a|b --encap mpls-gre|mpls-udp|vxlan
    compute.py agent  --me a|b          the pkt0 agent (runs until killed)
    compute.py traffic --me a --encap E  ping + TCP to the peer's VMs while
                                        checking every fabric frame
    compute.py teardown                 delete vifs and namespaces
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from ipaddress import ip_address
from pathlib import Path

SDN = Path(os.environ.get("VRK_SDN", "/opt/vrk/sdn-src"))
sys.path.insert(0, str(SDN))

from scapy.layers.inet import GRE, IP, UDP  # noqa: E402
from scapy.layers.l2 import ARP, Ether  # noqa: E402

from vrstack.datapath.client import NETLINK, connect  # noqa: E402
from vrstack.datapath.codec import Obj, Op  # noqa: E402

ROUTER_MAC = "00:00:5e:00:01:00"
VRF = 1
VNI = 5001
FABRIC = "eth1"
TUNNEL_NH = 10


@dataclass(frozen=True)
class Vm:
    ns: str
    veth: str
    vif: int
    ip: str
    mac: str
    label: int


@dataclass(frozen=True)
class Node:
    name: str
    mac: str  # eth1's MAC, given by qemu
    ip: str  # vhost0: the tunnel endpoint
    vms: tuple[Vm, ...]


NODES = {
    "a": Node(
        "a",
        "02:00:c6:12:00:01",
        "198.18.0.1",
        (
            Vm("vrk-a1", "vrkt1", 3, "198.19.1.11", "02:00:c6:13:01:0b", 101),
            Vm("vrk-a2", "vrkt2", 4, "198.19.1.12", "02:00:c6:13:01:0c", 102),
        ),
    ),
    "b": Node(
        "b",
        "02:00:c6:12:00:02",
        "198.18.0.2",
        (
            Vm("vrk-b1", "vrkt3", 3, "198.19.1.21", "02:00:c6:13:01:15", 201),
            Vm("vrk-b2", "vrkt4", 4, "198.19.1.22", "02:00:c6:13:01:16", 202),
        ),
    ),
}


def sh(*args: str, check: bool = True, timeout: float = 30) -> str:
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=False)
    if check and res.returncode:
        raise SystemExit(f"compute: {' '.join(args)}: {res.stderr.strip()}")
    return res.stdout


def peer_of(me: Node) -> Node:
    return NODES["b" if me.name == "a" else "a"]


def setup(me: Node) -> None:
    for vm in me.vms:  # what an earlier, interrupted run left
        sh("ip", "netns", "del", vm.ns, check=False)
        sh("ip", "link", "del", vm.veth, check=False)
    sh("ip", "link", "set", FABRIC, "mtu", "9000", "up")
    with open("/sys/class/net/vhost0/address") as f:
        if f.read().strip() != me.mac:  # the vrouter role may have set it already
            sh("ip", "link", "set", "vhost0", "address", me.mac)
    sh("ip", "link", "set", "vhost0", "up")
    sh("ip", "addr", "replace", f"{me.ip}/24", "dev", "vhost0")
    sh("ip", "link", "set", "pkt0", "up")
    with connect(NETLINK) as c:
        c.call(Op.ADD, Obj.VIF, VIF_IDX=0, VIF_TYPE=1, VIF_NAME=FABRIC, VIF_MAC=me.mac)
        c.call(Op.ADD, Obj.VIF, VIF_IDX=1, VIF_TYPE=2, VIF_NAME="vhost0", VIF_MAC=me.mac,
               VIF_IP=ip_address(me.ip))  # fmt: skip
        c.call(Op.ADD, Obj.VIF, VIF_IDX=2, VIF_TYPE=4, VIF_NAME="pkt0")
        for i, vm in enumerate(me.vms):
            sh("ip", "netns", "add", vm.ns)
            sh("ip", "-n", vm.ns, "link", "set", "lo", "up")
            sh("ip", "link", "add", vm.veth, "type", "veth", "peer", "name", "eth0",
               "netns", vm.ns)  # fmt: skip
            sh("ip", "link", "set", vm.veth, "up")
            sh("ip", "-n", vm.ns, "link", "set", "eth0", "address", vm.mac, "up")
            sh("ip", "-n", vm.ns, "addr", "add", f"{vm.ip}/24", "dev", "eth0")
            c.call(Op.ADD, Obj.VIF, VIF_IDX=vm.vif, VIF_TYPE=3, VIF_VRF=VRF, VIF_NAME=vm.veth,
                   VIF_MAC=ROUTER_MAC, VIF_FLAGS=1)  # fmt: skip
            nh = 1 + i
            c.call(Op.ADD, Obj.NH, NH_ID=nh, NH_TYPE=3, NH_VRF=VRF, NH_OIF=vm.vif,
                   NH_SMAC=ROUTER_MAC, NH_DMAC=vm.mac)  # fmt: skip
            c.call(
                Op.ADD,
                Obj.ROUTE,
                RT_VRF=VRF,
                RT_FAMILY=1,
                RT_PREFIX=ip_address(vm.ip),
                RT_PLEN=32,
                RT_NH=nh,
            )
            c.call(Op.ADD, Obj.LABEL, LBL_LABEL=vm.label, LBL_NH=nh)
        c.call(Op.ADD, Obj.VNI, VNI_VNI=VNI, VNI_VRF=VRF)


ENCAPS = {"mpls-gre": 0x02, "mpls-udp": 0x04, "vxlan": 0x08}  # NH_F_*


def encap(me: Node, name: str) -> None:
    peer = peer_of(me)
    with connect(NETLINK) as c:
        c.call(Op.ADD, Obj.NH, NH_ID=TUNNEL_NH, NH_TYPE=4, NH_FLAGS=ENCAPS[name], NH_OIF=0,
               NH_SMAC=me.mac, NH_DMAC=peer.mac, NH_TUN_SIP=ip_address(me.ip), NH_TUN_DIP=ip_address(peer.ip))  # fmt: skip
        for vm in peer.vms:
            label = VNI if name == "vxlan" else vm.label
            c.call(Op.ADD, Obj.ROUTE, RT_VRF=VRF, RT_FAMILY=1, RT_PREFIX=ip_address(vm.ip), RT_PLEN=32, RT_NH=TUNNEL_NH,
                   RT_LABEL=label, RT_FLAGS=1)  # fmt: skip
        # Each run starts with no flows, so first packets trap to the agent again.
        for f in c.dump(Obj.FLOW):
            c.call(Op.DEL, Obj.FLOW, FL_INDEX=f.attrs["FL_INDEX"])


def agent(me: Node) -> None:
    """Answer ARP for the VMs' gateway and forward every new flow."""
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind(("pkt0", 0))
    with connect(NETLINK) as c:
        while True:
            data = s.recv(65536)
            if len(data) < 16 + 14:
                continue
            vif, _vrf, reason, _, flow = struct.unpack_from(">IIHHI", data)
            frame = Ether(data[16:])
            if reason == 3 and ARP in frame and frame[ARP].op == 1:
                a = frame[ARP]
                reply = Ether(dst=frame.src, src=ROUTER_MAC) / ARP(
                    op=2, hwsrc=ROUTER_MAC, psrc=a.pdst, hwdst=a.hwsrc, pdst=a.psrc
                )
                s.send(struct.pack(">IIHHI", vif, 0, 100, 0, 0) + bytes(reply))
            elif reason == 1:
                c.call(Op.ADD, Obj.FLOW, FL_INDEX=flow, FL_ACTION=1)
                print(f"agent: flow {flow} forwarded", flush=True)


def capture(stop: threading.Event, frames: list[Ether]) -> None:
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
    s.bind((FABRIC, 0))
    s.settimeout(0.1)
    with s:
        while not stop.is_set() and len(frames) < 20000:
            with contextlib.suppress(TimeoutError):
                frames.append(Ether(s.recv(65536)))


def check_frame(f: Ether, name: str, me: Node, peer: Node, ips: set[str]) -> str | None:
    """None if f is the right encapsulation of VM-to-VM traffic, else why not."""
    if IP not in f or f[IP].src not in (me.ip, peer.ip) or f[IP].dst not in (me.ip, peer.ip):
        return None if ARP in f or IP not in f else f"non-fabric IP {f[IP].src}"
    outer = f[IP]
    labels = {vm.label for vm in (*me.vms, *peer.vms)}
    if name == "mpls-gre":
        if GRE not in outer or outer[GRE].proto != 0x8847:
            return "not MPLSoGRE"
        payload = bytes(outer[GRE].payload)
    elif UDP in outer and outer[UDP].dport == (6635 if name == "mpls-udp" else 4789):
        payload = bytes(outer[UDP].payload)
    elif ICMP_OK(outer):
        return None  # vhost0 to vhost0 ping, not tunnel traffic
    else:
        return f"not {name}: {outer.summary()}"
    if name == "vxlan":
        vni = int.from_bytes(payload[4:7], "big")
        inner = Ether(payload[8:])
        if vni != VNI or IP not in inner:
            return f"VXLAN VNI {vni}"
        ip = inner[IP]
    else:
        label = int.from_bytes(payload[:3], "big") >> 4
        if label not in labels or not payload[2] & 1:
            return f"MPLS label {label}"
        ip = IP(payload[4:])
    if ip.src not in ips or ip.dst not in ips:
        return f"inner {ip.src} -> {ip.dst}"
    return None


def ICMP_OK(outer: IP) -> bool:
    return outer.proto == 1


def traffic(me: Node, name: str) -> int:
    peer = peer_of(me)
    ips = {vm.ip for vm in (*me.vms, *peer.vms)}
    stop, frames = threading.Event(), []
    t = threading.Thread(target=capture, args=(stop, frames), daemon=True)
    t.start()
    time.sleep(0.3)
    failures = []
    for src, dst in zip(me.vms, peer.vms, strict=True):
        res = subprocess.run(["ip", "netns", "exec", src.ns, "ping", "-c", "3", "-i", "0.3",
                              "-W", "3", dst.ip], capture_output=True, text=True, timeout=30)  # fmt: skip
        print(f"ping {src.ip} -> {dst.ip}: {'ok' if res.returncode == 0 else 'FAIL'}")
        if res.returncode:
            failures.append(f"ping {dst.ip}: {res.stdout[-200:]}")
    # TCP: 300 kB through iperf3 (server on the peer, started by the runner).
    dst = peer.vms[0]
    res = subprocess.run(["ip", "netns", "exec", me.vms[0].ns, "iperf3", "-c", dst.ip, "-n",
                          "300K", "--connect-timeout", "5000", "-J"],
                         capture_output=True, text=True, timeout=60)  # fmt: skip
    print(f"tcp 300K {me.vms[0].ip} -> {dst.ip}: {'ok' if res.returncode == 0 else 'FAIL'}")
    if res.returncode:
        failures.append(f"tcp: {res.stdout[-300:]}{res.stderr[-300:]}")
    time.sleep(0.3)
    stop.set()
    t.join(5)
    tunnel = 0
    for f in frames:
        why = check_frame(f, name, me, peer, ips)
        if why:
            failures.append(f"fabric frame: {why}")
            break
        if IP in f and (GRE in f or UDP in f):
            tunnel += 1
    print(f"fabric: {len(frames)} frames captured, {tunnel} {name} frames, all checked")
    if tunnel < 20:
        failures.append(f"only {tunnel} tunnel frames on the fabric")
    for f in failures:
        print("FAIL " + f)
    return 1 if failures else 0


def teardown() -> None:
    with connect(NETLINK) as c:
        for m in c.dump(Obj.VIF):
            c.call(Op.DEL, Obj.VIF, VIF_IDX=m.attrs["VIF_IDX"])
    for node in NODES.values():
        for vm in node.vms:
            sh("ip", "netns", "del", vm.ns, check=False)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["setup", "encap", "agent", "traffic", "teardown"])
    p.add_argument("--me", choices=sorted(NODES), default="a")
    p.add_argument("--encap", choices=sorted(ENCAPS), default="mpls-gre")
    a = p.parse_args()
    me = NODES[a.me]
    if a.cmd == "setup":
        setup(me)
    elif a.cmd == "encap":
        encap(me, a.encap)
    elif a.cmd == "agent":
        agent(me)
    elif a.cmd == "traffic":
        return traffic(me, a.encap)
    else:
        teardown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
