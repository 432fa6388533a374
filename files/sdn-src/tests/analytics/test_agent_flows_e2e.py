"""Flow, port and route records from a real agent, end to end: one compute's SDN in a
namespace (computelab: config API, schema transformer, control node, `vrouterd
--attach-only` with pkt0 and a shared flow table, `vrstack-agent`) reporting to a real
`vrstack-collector` process; two VMs (namespaces on veth pairs) in one network whose
policy denies TCP 9999. VM a sends 200 KiB over TCP to VM b, spread over 4 s (several
flow records per direction), and tries port 9999. The collector's query API, grouped by
the flow's key and summing bytes, gives each direction's bytes as the VMs' own
interface counters saw them (Ethernet frames: what the datapath counts), within 2 %;
the denied attempt is a `drop` flow; the VMs' ports and the VRF's route count are there
and on the page's `/overview`.

Root only (namespaces, veths); skipped with a message otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "agent"))
from computelab import AGENT, COLLECTOR, ComputeLab
from netns import nsexec, sh, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and veths")
FLOWVM = Path(__file__).resolve().parent.parent / "agent" / "flowvm.py"
PAYLOAD = 200 * 1024
KEY = ["vrf", "src_ip", "dst_ip", "proto", "src_port", "dst_port", "action"]


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[ComputeLab]:
    # Flows idle for 4 s are aged (ageing every 2 s); flow records every second.
    lab = ComputeLab(
        tmp_path,
        flows=True,
        collector=True,
        agent_extra={"flow_idle": 4, "analytics": {"flow_interval": 1}},
    )
    try:
        lab.start()
        yield lab
    except Exception:
        print(lab.logs())
        raise
    finally:
        lab.stop()


@pytest.fixture
def vm_namespaces() -> Iterator[list[str]]:
    """The VMs' namespaces, deleted after the test."""
    made: list[str] = []
    yield made
    for ns in made:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def query(lab: ComputeLab, body: dict[str, Any]) -> list[dict[str, Any]]:
    status, answer = lab.call(COLLECTOR, "POST", "/query", body)
    assert status == 200, answer
    return list(answer["items"])


def flows_by_port(lab: ComputeLab) -> dict[int, dict[str, Any]]:
    rows = query(
        lab,
        {
            "table": "flows",
            "select": [*KEY, "sum(bytes)", "sum(packets)", "count()"],
            "group_by": KEY,
            "since": "-10m",
            "limit": 1000,
        },
    )
    return {r["src_port"]: r for r in rows if r["proto"] == 6}


def tx(ns: str) -> tuple[int, int]:
    """The VM interface's sent bytes and frames (Ethernet header included, no FCS)."""
    out = nsexec(ns, "cat", "/sys/class/net/eth0/statistics/tx_bytes")
    frames = nsexec(ns, "cat", "/sys/class/net/eth0/statistics/tx_packets")
    return int(out.stdout), int(frames.stdout)


def add_vm(
    lab: ComputeLab, made: list[str], name: str, vmi: dict[str, Any], net: dict[str, Any]
) -> str:
    """Plug the port (as the os-vif plugin does), then make its tap: a veth pair whose
    other end is the VM's eth0, offloads off (one frame per segment)."""
    ns, tap, ip = f"vrfl{os.getpid() % 100000}{name}", f"tapfl{name}", vmi["fixed_ips"][0]
    port = {
        "id": vmi["uuid"],
        "network": net["uuid"],
        "mac": vmi["mac_address"],
        "ips": [ip["ip_address"]],
        "tap": tap,
    }
    status, body = lab.call(AGENT, "POST", "/ports", port)
    assert status == 201, body
    sh("ip", "netns", "add", ns)
    made.append(ns)
    sh("ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1")
    sh("ip", "-n", lab.ns, "link", "add", tap, "type", "veth", "peer", "name", "eth0", "netns", ns)
    sh("ip", "netns", "exec", lab.ns, "sysctl", "-qw", f"net.ipv6.conf.{tap}.disable_ipv6=1")
    sh("ip", "-n", lab.ns, "link", "set", tap, "up")
    sh("ip", "-n", ns, "link", "set", "eth0", "address", vmi["mac_address"])
    sh("ip", "-n", ns, "addr", "add", f"{ip['ip_address']}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    nsexec(ns, sys.executable, str(FLOWVM), "plain", "eth0", check=True)
    wait_for(lambda: (lab.interface(vmi["uuid"]) or {}).get("status") == "up", 15, f"{name} up")
    return ns


def test_flow_records_match_the_traffic(lab: ComputeLab, vm_namespaces: list[str]) -> None:
    project = lab.create("project", {"name": "flows"})
    deny = {"action": "deny", "protocol": "tcp", "destination_ports": [9999, 9999]}
    policy = lab.create(
        "network-policy", {"name": "no9999", "parent_uuid": project["uuid"], "rules": [deny]}
    )
    net = lab.create(
        "virtual-network",
        {
            "name": "red",
            "parent_uuid": project["uuid"],
            "subnets": [{"cidr": "198.18.70.0/24"}],
            "network_policies": [policy["uuid"]],
        },
    )

    def acl() -> bool:
        page = lab.api("GET", "/access-control-lists")
        return any(a["parent_uuid"] == net["uuid"] and a.get("entries") for a in page["items"])

    # The ACL exists before any port is bound here, so the push that places the ports
    # carries it: the first packets are decided by the policy.
    wait_for(acl, 15, "the network's ACL from the schema transformer")
    vmis = [
        lab.create(
            "virtual-machine-interface",
            {
                "name": f"vm{n}-eth0",
                "parent_uuid": project["uuid"],
                "virtual_network": net["uuid"],
                "virtual_router": lab.router["uuid"],
            },
        )
        for n in "ab"
    ]
    a, b = (add_vm(lab, vm_namespaces, n, vmi, net) for n, vmi in zip("ab", vmis, strict=True))
    b_ip = vmis[1]["fixed_ips"][0]["ip_address"]
    # ARP and an ICMP flow first, so the counted window holds the TCP flow alone.
    nsexec(a, "ping", "-c", "2", "-W", "2", b_ip, check=True)

    a0, b0 = tx(a), tx(b)
    sink = subprocess.Popen(
        ["ip", "netns", "exec", b, sys.executable, str(FLOWVM), "sink", "5001", "20"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert sink.stdout is not None and sink.stdout.readline().strip() == "listening"
        sent = nsexec(
            a, sys.executable, str(FLOWVM), "send", b_ip, "5001", "40001", str(PAYLOAD), "4"
        )
        assert sent.stdout.strip() == "ok", sent.stderr
        got, _ = sink.communicate(timeout=20)
    finally:
        sink.kill()
    assert int(got) == PAYLOAD
    time.sleep(0.2)  # the last ACK is out
    a1, b1 = tx(a), tx(b)
    a_bytes, a_frames = a1[0] - a0[0], a1[1] - a0[1]
    b_bytes, b_frames = b1[0] - b0[0], b1[1] - b0[1]
    # Headers included: every frame carries 14 + 20 + 32 (TCP with timestamps) bytes.
    assert PAYLOAD + 66 * (PAYLOAD // 1448) <= a_bytes < PAYLOAD * 1.1, a_bytes

    probe = nsexec(a, sys.executable, str(FLOWVM), "probe", b_ip, "9999", "40002", "1.5")
    assert probe.stdout.strip() in ("TimeoutError", "timeout"), probe.stdout

    # Each direction's records, summed, once the flows have aged out (their last slice).
    def settled() -> dict[int, dict[str, Any]] | None:
        rows = flows_by_port(lab)
        ended = not [f for f in lab.agent("/introspect/flows") if f["protocol"] == 6]
        done = {40001, 5001, 40002} <= rows.keys() and ended
        return rows if done and rows[40001]["sum(bytes)"] >= a_bytes * 0.98 else None

    rows = wait_for(settled, 30, "the TCP flows' records, aged out", every=0.5)
    time.sleep(1.5)  # anything still queued in the sender arrives
    rows = flows_by_port(lab)
    fwd, rev, denied = rows[40001], rows[5001], rows[40002]
    print(f"a->b: sent {a_bytes} B in {a_frames} frames; records {fwd}")
    print(f"b->a: sent {b_bytes} B in {b_frames} frames; records {rev}")
    assert fwd["action"] == "forward" and fwd["dst_port"] == 5001
    assert fwd["vrf"] == rev["vrf"] and fwd["vrf"].endswith(":red:red")
    assert abs(fwd["sum(bytes)"] - a_bytes) <= a_bytes * 0.02
    assert abs(fwd["sum(packets)"] - a_frames) <= max(2, a_frames * 0.02)
    assert abs(rev["sum(bytes)"] - b_bytes) <= b_bytes * 0.02
    assert fwd["count()"] >= 2, "a 4 s flow with records every second has several slices"
    assert denied["action"] == "drop" and denied["dst_port"] == 9999
    assert denied["sum(packets)"] >= 1  # the SYN (and its retries), dropped

    # Ports and the VRF's route count, as the operator's page reads them.
    status, overview = lab.call(COLLECTOR, "GET", "/overview")
    assert status == 200, overview
    nets = {n["vrf"]: n for n in overview["networks"]}
    red = nets[fwd["vrf"]]
    ips = sorted(v["ip"] for v in red["vms"] if v["state"] == "up")
    assert ips == sorted(v["fixed_ips"][0]["ip_address"] for v in vmis), red
    assert [r["count"] for r in red["routes"] if r["source"] == "compute1"] == [2], red
