"""vrouter.ko (MPLSoUDP) against Linux VXLAN between the same VM namespaces
on the two TCG computes (see bench/kernel.sh).  Prints both and the ratio.

    python bench/kernel_bench.py [SECONDS] [--rounds N] [--modes M,M] [--no-userspace]

Modes: `vrouter` (the module as loaded by default), `linux` (Linux VXLAN +
bridge, the baseline), `vrouter-nooffload` (the module with offload=0: every
frame through dp-core on its own, as before TCP aggregates went whole).  The
modes run in turn, round after round, so load from other work on this machine
falls on all of them alike; each figure is the median of its rounds and the
load average is printed with every run.  Last, the userspace host's ratio to
Linux VXLAN on this machine (bench/datapath_bench.py throughput).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "files/vrouter-src/tests/kernel"))

import run  # noqa: E402  (tests/kernel/run.py: VMs, push, ssh)

NODES = {"a": ("198.18.0.1", "198.19.1.11"), "b": ("198.18.0.2", "198.19.1.21")}
MODES = ("vrouter", "linux", "vrouter-nooffload")
OMIT = 2  # seconds of each iperf3 run not counted


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load {one:.1f} {five:.1f} {fifteen:.1f}"


def iperf(seconds: int, udp: bool) -> dict[str, float]:
    run.ssh("b", "ip netns exec vrk-b1 iperf3 -s -D -1 -I /tmp/vrk-iperf.pid")
    # The first seconds are left out on both paths: there vrouter.ko waits for
    # the stand-in agent (Python, slow under TCG) to set up the new flows.
    args = ("-u -b 0 -l 64 " if udp else "") + f"-t {seconds} -O {OMIT}"
    out = run.ssh(
        "a", f"ip netns exec vrk-a1 iperf3 -c 198.19.1.21 {args} -J", timeout=seconds + 90
    )
    end = json.loads(out[out.index("{") :])["end"]
    if udp:
        s = end["sum"]
        got = s["packets"] - s["lost_packets"]
        return {"pps": got / s["seconds"]}
    return {"gbps": end["sum_received"]["bits_per_second"] / 1e9}


def vrouter(seconds: int, offload: bool) -> dict[str, float]:
    for node in run.VMS:
        run.ssh(
            node,
            "rmmod vrouter 2>/dev/null; "
            f"insmod /opt/vrk/vrouter.ko flows=65536 offload={int(offload)}",
        )
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
    for node, (fab, _) in NODES.items():
        n = run.VMS[node][0][-1]
        run.ssh(
            node,
            f"ip link del br0; ip link del vxlan0; ip netns del vrk-{n}1; "
            f"ip addr del {fab}/24 dev eth1",
        )
    return res


def measure(mode: str, seconds: int) -> dict[str, float]:
    if mode == "linux":
        return linux_vxlan(seconds)
    return vrouter(seconds, offload=mode == "vrouter")


def userspace(seconds: int) -> None:
    """The userspace host against Linux VXLAN, on this machine (no module needed)."""
    out = subprocess.run(
        [sys.executable, str(REPO / "bench/datapath_bench.py"), "throughput", str(seconds)],
        capture_output=True,
        text=True,
        timeout=seconds * 2 + 300,
        check=False,
    )
    print(f"userspace host, this machine ({load()}): {(out.stdout + out.stderr).strip()}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("seconds", type=int, nargs="?", default=10)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--modes", default=",".join(MODES))
    p.add_argument("--no-userspace", action="store_true")
    a = p.parse_args()
    modes = a.modes.split(",")
    if "linux" not in modes or not set(modes) <= set(MODES) or not 1 <= a.rounds <= 10:
        p.error(f"--modes: some of {','.join(MODES)}, including linux; --rounds 1..10")
    ko = run.kvm.build_module(run.SRC, None)
    threads = [
        threading.Thread(target=run.kvm.up, args=(n, port, fab, mac, 1024))
        for n, port, fab, mac in run.VMS.values()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    results: dict[str, list[dict[str, float]]] = {m: [] for m in modes}
    try:
        for node in run.VMS:
            run.push(node, ko)
        for r in range(a.rounds):
            for mode in modes:
                at = load()
                res = measure(mode, a.seconds)
                results[mode].append(res)
                print(
                    f"round {r + 1} {mode:18} {res['gbps'] * 1000:6.1f} Mbit/s TCP "
                    f"{res['pps']:7.0f} pps UDP/64   ({at})",
                    flush=True,
                )
    finally:
        for name, *_ in run.VMS.values():
            run.kvm.down(name)
    med = {
        m: {k: statistics.median(x[k] for x in rs) for k in ("gbps", "pps")}
        for m, rs in results.items()
    }
    base = med["linux"]
    for m in modes:
        # Each round's own ratio too: the two runs of a round saw similar load.
        rounds = " ".join(
            f"{x['gbps'] / lx['gbps']:.2f}/{x['pps'] / lx['pps']:.2f}"
            for x, lx in zip(results[m], results["linux"], strict=True)
        )
        print(
            f"{m:18} median {med[m]['gbps'] * 1000:6.1f} Mbit/s TCP {med[m]['pps']:7.0f} pps  "
            f"ratio to Linux VXLAN: TCP {med[m]['gbps'] / base['gbps']:.2f}, "
            f"pps {med[m]['pps'] / base['pps']:.2f}  (by round, TCP/pps: {rounds})"
        )
    print(f"(qemu TCG guests, {a.seconds} s per test after {OMIT} s left out, {a.rounds} rounds)")
    if not a.no_userspace:
        userspace(a.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
