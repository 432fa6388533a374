"""Datapath figures that need Python: route adds/s through the control socket
with the Python client, and VM-to-VM TCP throughput (iperf3) across two
computes over MPLSoUDP in the userspace datapath, against the kernel's own
forwarding between the same kind of namespaces (veth + bridge + Linux VXLAN).

    python bench/datapath_bench.py msg SOCKET [N]
    python bench/datapath_bench.py throughput [SECONDS]

Root for `throughput`; namespaces use 198.18.0.0/15 only and are removed.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "files" / "sdn-src"))
sys.path.insert(0, str(REPO / "files" / "vrouter-src" / "tests" / "e2e"))

from vrstack.datapath.client import DatapathClient  # noqa: E402
from vrstack.datapath.codec import Obj, Op  # noqa: E402


def msg_rate(sock: str, n: int) -> None:
    with DatapathClient(sock) as c:
        start = time.monotonic()
        for i in range(n):
            c.call(
                Op.ADD,
                Obj.ROUTE,
                RT_VRF=4,
                RT_FAMILY=1,
                RT_PLEN=32,
                RT_NH=1,
                RT_PREFIX=f"198.18.{i // 256 % 256}.{i % 256}",
            )
        took = time.monotonic() - start
    print(f"msg: {n} route adds with the Python client: {n / took:.0f} adds/s")


def iperf(client_ns: str, server_ns: str, server_ip: str, seconds: int) -> float:
    server = subprocess.Popen(
        ["ip", "netns", "exec", server_ns, "iperf3", "-s", "-1", "-B", server_ip],
        stdout=subprocess.DEVNULL,
    )
    try:
        time.sleep(0.5)
        out = subprocess.run(
            ["ip", "netns", "exec", client_ns, "iperf3", "-c", server_ip, "-t", str(seconds), "-J"],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        ).stdout
    finally:
        server.wait(timeout=10)
    return float(json.loads(out)["end"]["sum_received"]["bits_per_second"])


def userspace(seconds: int) -> float:
    from topology import set_encap, two_computes

    with two_computes() as (a, b):
        set_encap(a, b, "mpls-udp")
        set_encap(b, a, "mpls-udp")
        # ARP and flow setup first, so the run measures forwarding only.
        subprocess.run(
            [
                "ip",
                "netns",
                "exec",
                a.vms[0].ns,
                "python3",
                "-c",
                "import socket; s=socket.create_connection(('198.19.1.21', 9), 3)",
            ],
            capture_output=True,
            timeout=20,
            check=False,
        )
        return iperf(a.vms[0].ns, b.vms[0].ns, b.vms[0].ip, seconds)


def kernel(seconds: int) -> float:
    pfx = "vrk"
    names = [f"{pfx}a", f"{pfx}b", f"{pfx}a1", f"{pfx}b1"]

    def ns(name: str, *cmd: str) -> None:
        subprocess.run(["ip", "netns", "exec", name, *cmd], check=True, timeout=20)

    try:
        for n in names:
            subprocess.run(["ip", "netns", "add", n], check=True)
            ns(n, "ip", "link", "set", "lo", "up")
        subprocess.run(
            [
                "ip",
                "link",
                "add",
                f"{pfx}fa",
                "netns",
                f"{pfx}a",
                "type",
                "veth",
                "peer",
                "name",
                f"{pfx}fb",
                "netns",
                f"{pfx}b",
            ],
            check=True,
        )
        for side, fab, tun, peer, vm, ip in (
            ("a", f"{pfx}fa", "198.18.1.1", "198.18.1.2", f"{pfx}a1", "198.19.2.11"),
            ("b", f"{pfx}fb", "198.18.1.2", "198.18.1.1", f"{pfx}b1", "198.19.2.21"),
        ):
            c = f"{pfx}{side}"
            ns(c, "ip", "addr", "add", f"{tun}/24", "dev", fab)
            ns(c, "ip", "link", "set", fab, "up")
            ns(
                c,
                "ip",
                "link",
                "add",
                "vx0",
                "type",
                "vxlan",
                "id",
                "42",
                "local",
                tun,
                "remote",
                peer,
                "dstport",
                "4789",
                "dev",
                fab,
            )
            ns(c, "ip", "link", "add", "br0", "type", "bridge")
            ns(c, "ip", "link", "add", "vm0", "type", "veth", "peer", "name", "eth0", "netns", vm)
            for dev in ("vx0", "vm0"):
                ns(c, "ip", "link", "set", dev, "master", "br0")
                ns(c, "ip", "link", "set", dev, "up")
            ns(c, "ip", "link", "set", "br0", "up")
            ns(vm, "ip", "addr", "add", f"{ip}/24", "dev", "eth0")
            ns(vm, "ip", "link", "set", "eth0", "mtu", "1450", "up")
        return iperf(f"{pfx}a1", f"{pfx}b1", "198.19.2.21", seconds)
    finally:
        for n in names:
            subprocess.run(["ip", "netns", "del", n], check=False)


def main() -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "msg":
        msg_rate(sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 20000)
        return 0
    if len(sys.argv) >= 2 and sys.argv[1] == "throughput":
        seconds = int(sys.argv[2]) if len(sys.argv) > 2 else 5
        user = userspace(seconds)
        kern = kernel(seconds)
        print(
            f"throughput: userspace vrouterd MPLSoUDP {user / 1e9:.2f} Gbit/s, "
            f"kernel veth+VXLAN {kern / 1e9:.2f} Gbit/s, ratio {user / kern:.3f}"
        )
        return 0
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
