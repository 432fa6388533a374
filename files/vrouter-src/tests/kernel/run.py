"""vrouter.ko in real kernels: two Debian 12 qemu (TCG) VMs (tools/kvm.py)
joined by a fabric NIC.  Builds the module against the image's kernel, then:
smoke test on one VM (netlink channel with golden and corrupted messages,
vifs on netdevices, flow table mmap), the end-to-end test across both (ping
and TCP between VM namespaces over MPLSoGRE, MPLSoUDP and VXLAN, every fabric
frame checked, flows trapped and released by a stand-in agent on pkt0), then
unload, reload and unload with dmesg checked for warnings and leaks.

    python tests/kernel/run.py [--keep]     (root; ~2-3 min with the VMs up)
    python tests/kernel/run.py --loaded     the module is loaded already (by the
                                            vrouter role): only the end-to-end part
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import threading
import time
from pathlib import Path

SRC = Path(__file__).resolve().parents[2]
REPO = SRC.parents[1]
sys.path.insert(0, str(REPO / "tools"))

import kvm  # noqa: E402

VMS = {
    "a": ("vrk-a", 22671, (22681, 22682), "02:00:c6:12:00:01"),
    "b": ("vrk-b", 22672, (22682, 22681), "02:00:c6:12:00:02"),
}
ENCAPS = ("mpls-gre", "mpls-udp", "vxlan")
FLOWS = 4096
BAD_DMESG = ("WARNING:", "BUG:", "Call Trace", "leak:", "kmemleak", "general protection")


def ssh(node: str, cmd: str, check: bool = True, timeout: float = 300) -> str:
    res = subprocess.run(
        kvm.ssh_cmd(VMS[node][0], cmd), capture_output=True, text=True, timeout=timeout
    )
    out = res.stdout + res.stderr
    if check and res.returncode:
        raise AssertionError(f"{node}: {cmd}: exit {res.returncode}\n{out}")
    return out


def step(what: str, start: float) -> None:
    print(f"[{time.monotonic() - start:6.1f}s] {what}", flush=True)


def push(node: str, ko: Path | None) -> None:
    """Module, datapath package, vectors and these tests to /opt/vrk (one tar over ssh)."""
    files = [
        ("-C", str(REPO / "files/sdn-src"), "vrstack/__init__.py", "vrstack/datapath"),
        ("-C", str(SRC / "tests"), "vectors", "kernel"),
    ]
    if ko:
        files.append(("-C", str(ko.parent), ko.name))
    args = [x for group in files for x in group]
    tar = subprocess.Popen(["tar", "c", "--exclude", "__pycache__", *args], stdout=subprocess.PIPE)
    subprocess.run(
        kvm.ssh_cmd(
            VMS[node][0],
            "rm -rf /opt/vrk && mkdir -p /opt/vrk && tar x -C /opt/vrk && "
            + (f"mv /opt/vrk/{ko.name} /opt/vrk/vrouter.ko && " if ko else "")
            + "mkdir -p /opt/vrk/sdn-src && "
            "mv /opt/vrk/vrstack /opt/vrk/sdn-src/ && cp /opt/vrk/kernel/*.py /opt/vrk/",
        ),
        stdin=tar.stdout,
        check=True,
        timeout=120,
    )
    tar.wait(30)


def aggregates(node: str) -> int:
    """TCP aggregates the node's vrouter.ko passed through dp-core whole."""
    return int(ssh(node, "cat /sys/module/vrouter/parameters/tcp_aggregates").strip())


def check_unload(node: str) -> None:
    ssh(node, "rmmod vrouter")
    log = ssh(node, "dmesg")
    assert "vrouter: unloaded (allocations outstanding 0, packets outstanding 0)" in log, log[
        -2000:
    ]
    bad = [line for line in log.splitlines() if any(b in line for b in BAD_DMESG)]
    assert not bad, "\n".join(bad)


def smoke(start: float) -> None:
    """One VM: bad parameters, the netlink channel, vifs, flow mmap, clean unload."""
    out = ssh("a", "insmod /opt/vrk/vrouter.ko flows=3000; dmesg | tail -1", check=False)
    assert "flows=3000 is not a power of two" in out, out
    ssh("a", "dmesg -C")
    ssh("a", f"insmod /opt/vrk/vrouter.ko flows={FLOWS}")
    print(
        ssh(
            "a",
            "python3 /opt/vrk/smoke.py --sdn /opt/vrk/sdn-src --vectors /opt/vrk/vectors "
            f"--fabric eth1 --flows {FLOWS}",
        )
    )
    check_unload("a")
    step("smoke test passed, unloaded clean", start)


def e2e(start: float, load: str | None) -> None:
    """Both VMs: ping + TCP per overlay with the fabric checked, then unload and
    reload (load: the command that loads the module; None: it is loaded)."""
    for node in VMS:
        if load:
            ssh(node, f"dmesg -C; {load}")
        ssh(node, f"python3 /opt/vrk/compute.py setup --me {node}")
        ssh(
            node,
            f"setsid python3 /opt/vrk/compute.py agent --me {node} "
            "> /tmp/vrk-agent.log 2>&1 < /dev/null & echo $! > /tmp/vrk-agent.pid",
        )
    ssh("b", "ip netns exec vrk-b1 iperf3 -s -D -I /tmp/vrk-iperf.pid")
    # vhost0 owns each compute's fabric address: host to host through dp-core.
    print(ssh("a", "ping -c 2 -W 3 198.18.0.2 | tail -2"))
    step("computes programmed", start)
    for encap in ENCAPS:
        for node in ("b", "a"):
            ssh(node, f"python3 /opt/vrk/compute.py encap --me {node} --encap {encap}")
        before = {node: aggregates(node) for node in VMS}
        print(ssh("a", f"python3 /opt/vrk/compute.py traffic --me a --encap {encap}"))
        sent, got = (aggregates(node) - before[node] for node in VMS)
        print(f"TCP aggregates through dp-core whole: sender {sent}, receiver {got}")
        # The sender's VM hands over 64 kB sends; the receiver's fabric GRO
        # merges MPLSoUDP and VXLAN (not GRE) segments of one flow.
        assert sent > 0, f"{encap}: no TCP aggregate left vrk-a whole"
        assert got > 0 or encap == "mpls-gre", f"{encap}: fabric GRO merged nothing on vrk-b"
        step(f"{encap}: ping + TCP, fabric checked", start)
    flows = ssh("a", "grep -c forwarded /tmp/vrk-agent.log", check=False).strip()
    assert int(flows or 0) >= 6, f"agent installed {flows} flows"
    print(
        ssh(
            "a",
            "cd /opt/vrk/sdn-src && python3 -m vrstack.datapath.cli flow --list "
            "--mmap /dev/vrouter_flow | head -5",
        )
    )
    for node in VMS:
        ssh(node, "kill $(cat /tmp/vrk-agent.pid /tmp/vrk-iperf.pid 2>/dev/null); true")
        ssh(node, "python3 /opt/vrk/compute.py teardown")
        check_unload(node)
    step("both unloaded clean", start)
    for node in VMS:
        ssh(node, f"{load or 'modprobe vrouter'} && python3 /opt/vrk/compute.py setup --me {node}")
        check_unload(node)
    step("reload with vifs, unload clean", start)


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--keep", action="store_true", help="leave the VMs running")
    p.add_argument(
        "--loaded",
        action="store_true",
        help="the module is already loaded (by the vrouter role): end-to-end test only",
    )
    a = p.parse_args()
    start = time.monotonic()
    ko = None
    if not a.loaded:
        kvm.build_image()
        step("image ready", start)
        ko = kvm.build_module(SRC, None)
        step(f"module built: {ko.name}", start)
    # Machines already up are reused.
    threads = [
        threading.Thread(target=kvm.up, args=(n, port, fab, mac, 1024))
        for n, port, fab, mac in VMS.values()
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    step("VMs up", start)
    try:
        for node in VMS:
            push(node, ko)
            if ko:
                ssh(node, "rmmod vrouter 2>/dev/null; dmesg -C")
        step("pushed tests", start)
        if ko:
            smoke(start)
            e2e(start, f"insmod /opt/vrk/vrouter.ko flows={FLOWS}")
        else:
            e2e(start, None)
    finally:
        if not a.keep:
            for name, *_ in VMS.values():
                kvm.down(name)
    step("kernel test: PASS", start)
    return 0


if __name__ == "__main__":
    sys.exit(main())
