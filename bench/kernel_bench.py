"""vrouter.ko (MPLSoUDP) against Linux VXLAN between the same VM namespaces
on the two TCG computes (see bench/kernel.sh).  Prints both and the ratio."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "files/vrouter-src/tests/kernel"))

import run  # noqa: E402  (tests/kernel/run.py: VMs, push, ssh)

NODES = {"a": ("198.18.0.1", "198.19.1.11"), "b": ("198.18.0.2", "198.19.1.21")}


def iperf(seconds: int, udp: bool) -> dict[str, float]:
    run.ssh("b", "ip netns exec vrk-b1 iperf3 -s -D -1 -I /tmp/vrk-iperf.pid")
    args = f"-u -b 0 -l 64 -t {seconds}" if udp else f"-t {seconds}"
    out = run.ssh(
        "a", f"ip netns exec vrk-a1 iperf3 -c 198.19.1.21 {args} -J", timeout=seconds + 60
    )
    end = json.loads(out[out.index("{") :])["end"]
    if udp:
        s = end["sum"]
        got = s["packets"] - s["lost_packets"]
        return {"pps": got / s["seconds"], "lost": s["lost_percent"]}
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9}


def vrouter(seconds: int) -> dict[str, float]:
    for node in run.VMS:
        run.ssh(node, "rmmod vrouter 2>/dev/null; insmod /opt/vrk/vrouter.ko flows=65536")
        run.ssh(node, f"python3 /opt/vrk/compute.py setup --me {node}")
        run.ssh(
            node,
            f"setsid python3 /opt/vrk/compute.py agent --me {node} "
            "> /tmp/vrk-agent.log 2>&1 < /dev/null & echo $! > /tmp/vrk-agent.pid",
        )
    for node in ("b", "a"):
        run.ssh(node, f"python3 /opt/vrk/compute.py encap --me {node} --encap mpls-udp")
    run.ssh("a", "ip netns exec vrk-a1 ping -c 3 -W 3 198.19.1.21")  # flows in place
    res = iperf(seconds, False) | iperf(seconds, True)
    for node in run.VMS:
        run.ssh(node, "kill $(cat /tmp/vrk-agent.pid); python3 /opt/vrk/compute.py teardown")
        run.ssh(node, "rmmod vrouter")
    return res


def linux_vxlan(seconds: int) -> dict[str, float]:
    for node, (fab, vm) in NODES.items():
        peer = NODES["b" if node == "a" else "a"][0]
        n = run.VMS[node][0][-1]
        run.ssh(
            node,
            f"set -e; ip addr replace {fab}/24 dev eth1; ip link set eth1 mtu 9000 up; "
            f"ip link del vxlan0 2>/dev/null || true; ip link del br0 2>/dev/null || true; "
            f"ip link add vxlan0 type vxlan id 5001 local {fab} remote {peer} dstport 4789 dev eth1; "
            "ip link add br0 type bridge; ip link set vxlan0 master br0 up; ip link set br0 up; "
            f"ip netns del vrk-{n}1 2>/dev/null || true; ip netns add vrk-{n}1; "
            f"ip link add vrkx1 type veth peer name eth0 netns vrk-{n}1; "
            "ip link set vrkx1 master br0 up; "
            f"ip -n vrk-{n}1 link set lo up; ip -n vrk-{n}1 link set eth0 up; "
            f"ip -n vrk-{n}1 addr add {vm}/24 dev eth0",
        )
    run.ssh("a", "ip netns exec vrk-a1 ping -c 3 -W 3 198.19.1.21")
    res = iperf(seconds, False) | iperf(seconds, True)
    for node in run.VMS:
        n = run.VMS[node][0][-1]
        run.ssh(node, f"ip link del br0; ip link del vxlan0; ip netns del vrk-{n}1")
    return res


def main() -> int:
    seconds = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    ko = run.kvm.build_module(run.SRC, None)
    threads = [
        threading.Thread(target=run.kvm.up, args=(n, port, fab, mac, 1024))
        for n, port, fab, mac in run.VMS.values()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        for node in run.VMS:
            run.push(node, ko)
        vr = vrouter(seconds)
        lx = linux_vxlan(seconds)
    finally:
        for name, *_ in run.VMS.values():
            run.kvm.down(name)
    print(f"vrouter.ko MPLSoUDP: {vr['gbps'] * 1000:.0f} Mbit/s TCP, {vr['pps']:.0f} pps UDP/64")
    print(f"Linux VXLAN+bridge:  {lx['gbps'] * 1000:.0f} Mbit/s TCP, {lx['pps']:.0f} pps UDP/64")
    print(
        f"ratio vrouter.ko / Linux VXLAN: TCP {vr['gbps'] / lx['gbps']:.2f}, "
        f"pps {vr['pps'] / lx['pps']:.2f}  (qemu TCG guests, {seconds} s each)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
