"""Two computes in network namespaces, each running vrouterd with two VMs
(namespaces on TAPs), joined by a veth fabric, programmed with the CLI tools,
with a stand-in agent on pkt0.  Used by the end-to-end test and the
throughput benchmark.  Needs root; 198.18.0.0/15 inside its own namespaces.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
SDN = SRC.parent / "sdn-src"
sys.path.insert(0, str(SDN))

from scapy.layers.l2 import ARP, Ether  # noqa: E402

from vrstack.datapath.client import DatapathClient  # noqa: E402
from vrstack.datapath.codec import Obj, Op  # noqa: E402

PFX = f"vre{os.getpid() % 100000}"
ROUTER_MAC = "00:00:5e:00:01:00"
VRF = 1
VNI = 5001
CMD_TIMEOUT = 20


def sh(
    *args: str, check: bool = True, timeout: float = CMD_TIMEOUT
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=check, capture_output=True, text=True, timeout=timeout)


def nsexec(ns: str, *args: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, **kw)  # type: ignore[arg-type]


@dataclass
class Vm:
    ns: str
    tap: str
    vif: int
    ip: str
    mac: str
    label: int


@dataclass
class Compute:
    name: str
    ns: str
    fab_mac: str
    tun_ip: str
    dir: Path
    vms: list[Vm]
    proc: subprocess.Popen[bytes] | None = None
    agent: Agent | None = None

    @property
    def sock(self) -> Path:
        return self.dir / "control.sock"

    def cli(self, tool: str, *args: str, check: bool = True) -> str:
        env = dict(os.environ, PYTHONPATH=str(SDN), VROUTER_SOCKET=str(self.sock))
        res = subprocess.run(
            [sys.executable, "-m", "vrstack.datapath.cli", tool, *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=CMD_TIMEOUT,
            check=False,
        )
        if check and res.returncode:
            raise AssertionError(f"{self.name}: {tool} {' '.join(args)}: {res.stderr}")
        return res.stdout


# ---------------------------------------------------------------- the agent


@dataclass
class Agent:
    """A stand-in for the vrouter agent on pkt0: answers ARP with the router
    MAC and installs a forward flow for every flow miss."""

    compute: Compute
    arp_replies: int = 0
    flows_installed: list[int] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        path = self.compute.dir / "agent.sock"
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(str(path))
        s.settimeout(0.2)
        dp = str(self.compute.dir / "dp.sock")
        with s, DatapathClient(str(self.compute.sock)) as client:
            while not self.stop.is_set():
                try:
                    data = s.recv(65536)
                except TimeoutError:
                    continue
                vif, _vrf, reason, _, flow = struct.unpack_from(">IIHHI", data)
                frame = Ether(data[16:])
                if reason == 3 and ARP in frame and frame[ARP].op == 1:
                    a = frame[ARP]
                    reply = Ether(dst=frame.src, src=ROUTER_MAC) / ARP(
                        op=2, hwsrc=ROUTER_MAC, psrc=a.pdst, hwdst=a.hwsrc, pdst=a.psrc
                    )
                    s.sendto(struct.pack(">IIHHI", vif, 0, 100, 0, 0) + bytes(reply), dp)
                    self.arp_replies += 1
                elif reason == 1:
                    client.call(Op.ADD, Obj.FLOW, FL_INDEX=flow, FL_ACTION=1)
                    self.flows_installed.append(flow)


# ---------------------------------------------------------------- topology


def netns_fd(ns: str) -> int:
    return os.open(f"/run/netns/{ns}", os.O_RDONLY)


_libc = ctypes.CDLL(None, use_errno=True)


def socket_in_ns(ns: str, iface: str) -> socket.socket:
    """A raw packet socket on iface inside ns (setns for this thread only)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = netns_fd(ns)
    try:
        if _libc.setns(target, 0x40000000) != 0:  # CLONE_NEWNET
            raise OSError(ctypes.get_errno(), "setns")
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
        s.bind((iface, 0))
    finally:
        _libc.setns(own, 0x40000000)
        os.close(own)
        os.close(target)
    return s


def capture(s: socket.socket, seconds: float) -> list[Ether]:
    frames = []
    s.settimeout(0.1)
    end = time.monotonic() + seconds
    while time.monotonic() < end and len(frames) < 10000:
        with contextlib.suppress(TimeoutError):
            frames.append(Ether(s.recv(65536)))
    return frames


def drain(s: socket.socket) -> None:
    s.setblocking(False)
    try:
        for _ in range(100000):
            s.recv(65536)
    except BlockingIOError:
        pass


@contextlib.contextmanager
def two_computes() -> Iterator[tuple[Compute, Compute]]:
    vrouterd = SRC / "build" / "vrouterd"
    sh("make", "-s", "-C", str(SRC), "build/vrouterd", timeout=120)
    tmp = Path(tempfile.mkdtemp(prefix="vr-e2e-"))
    a = Compute(
        "a",
        f"{PFX}a",
        "02:00:c6:12:00:01",
        "198.18.0.1",
        tmp / "a",
        [
            Vm(f"{PFX}a1", f"{PFX}t1", 3, "198.19.1.11", "02:00:c6:13:01:0b", 101),
            Vm(f"{PFX}a2", f"{PFX}t2", 4, "198.19.1.12", "02:00:c6:13:01:0c", 102),
        ],
    )
    b = Compute(
        "b",
        f"{PFX}b",
        "02:00:c6:12:00:02",
        "198.18.0.2",
        tmp / "b",
        [
            Vm(f"{PFX}b1", f"{PFX}t3", 3, "198.19.1.21", "02:00:c6:13:01:15", 201),
            Vm(f"{PFX}b2", f"{PFX}t4", 4, "198.19.1.22", "02:00:c6:13:01:16", 202),
        ],
    )
    namespaces = [c.ns for c in (a, b)] + [vm.ns for c in (a, b) for vm in c.vms]
    try:
        for ns in namespaces:
            sh("ip", "netns", "add", ns)
            nsexec(ns, "ip", "link", "set", "lo", "up")
        sh("ip", "link", "add", f"{PFX}fa", "type", "veth", "peer", "name", f"{PFX}fb")
        for c, end in ((a, "fa"), (b, "fb")):
            sh("ip", "link", "set", f"{PFX}{end}", "netns", c.ns)
            nsexec(c.ns, "ip", "link", "set", f"{PFX}{end}", "name", "fab0")
            nsexec(c.ns, "ip", "link", "set", "fab0", "address", c.fab_mac, "mtu", "9000", "up")
            c.dir.mkdir()
            log = (c.dir / "vrouterd.log").open("w")
            c.proc = subprocess.Popen(
                [
                    "ip",
                    "netns",
                    "exec",
                    c.ns,
                    str(vrouterd),
                    "--control",
                    str(c.sock),
                    "--pkt0-dir",
                    str(c.dir),
                    "--flow-file",
                    str(c.dir / "flows"),
                    "--flows",
                    "4096",
                ],
                stderr=log,
            )
            for _ in range(100):
                if c.sock.exists():
                    break
                time.sleep(0.05)
            assert c.sock.exists(), f"vrouterd {c.name} did not start"
        for c, peer in ((a, b), (b, a)):
            program(c, peer)
            c.agent = Agent(c)
            threading.Thread(target=c.agent.run, daemon=True).start()
        yield a, b
    finally:
        for c in (a, b):
            if c.agent:
                c.agent.stop.set()
            if c.proc:
                c.proc.terminate()
                try:
                    c.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    c.proc.kill()
        for ns in namespaces:
            sh("ip", "netns", "del", ns, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


def program(c: Compute, peer: Compute) -> None:
    """Everything through the CLI, as an operator or the agent would."""
    c.cli(
        "vif",
        "--add",
        "0",
        "--type",
        "fabric",
        "--name",
        "fab0",
        "--mac",
        c.fab_mac,
        "--ip",
        c.tun_ip,
    )
    c.cli("vif", "--add", "2", "--type", "agent", "--name", "pkt0")
    for i, vm in enumerate(c.vms):
        c.cli(
            "vif",
            "--add",
            str(vm.vif),
            "--vrf",
            str(VRF),
            "--name",
            vm.tap,
            "--mac",
            ROUTER_MAC,
            "--policy",
        )
        # vrouterd created the TAP; hand it to the VM's namespace.
        sh("ip", "-n", c.ns, "link", "set", vm.tap, "netns", vm.ns)
        nsexec(vm.ns, "ip", "link", "set", vm.tap, "address", vm.mac, "up")
        nsexec(vm.ns, "ip", "addr", "add", f"{vm.ip}/24", "dev", vm.tap)
        nh = str(1 + i)
        c.cli(
            "nh",
            "--add",
            nh,
            "--type",
            "encap",
            "--vrf",
            str(VRF),
            "--oif",
            str(vm.vif),
            "--smac",
            ROUTER_MAC,
            "--dmac",
            vm.mac,
        )
        c.cli("rt", "--add", "--vrf", str(VRF), "--prefix", f"{vm.ip}/32", "--nh", nh)
        c.cli("mpls", "--add", str(vm.label), "--nh", nh)
    c.cli("vxlan", "--add", str(VNI), "--vrf", str(VRF))
    set_encap(c, peer, "mpls-gre")


def set_encap(c: Compute, peer: Compute, encap: str) -> None:
    c.cli(
        "nh",
        "--add",
        "10",
        "--type",
        "tunnel",
        "--encap",
        encap,
        "--oif",
        "0",
        "--smac",
        c.fab_mac,
        "--dmac",
        peer.fab_mac,
        "--sip",
        c.tun_ip,
        "--dip",
        peer.tun_ip,
    )
    for vm in peer.vms:
        label = VNI if encap == "vxlan" else vm.label
        c.cli(
            "rt",
            "--add",
            "--vrf",
            str(VRF),
            "--prefix",
            f"{vm.ip}/32",
            "--nh",
            "10",
            "--label",
            str(label),
        )
    # Start each run with an empty flow table so first packets trap again.
    with DatapathClient(str(c.sock)) as client:
        for f in client.dump(Obj.FLOW):
            client.call(Op.DEL, Obj.FLOW, FL_INDEX=f.attrs["FL_INDEX"])
