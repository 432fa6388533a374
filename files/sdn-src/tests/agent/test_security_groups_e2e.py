"""Security groups enforced by a real agent: one compute's SDN in a namespace (computelab:
config API, schema transformer, control node, `vrouterd --attach-only` with pkt0 and a
shared flow table, `vrstack-agent`) and three VMs (namespaces on veth pairs) in one
network on 198.18.71.0/24. VM b's group allows only TCP 80 in from 198.18.71.8/29
(VM a is .10, VM c is .30) and nothing out. Checked: a's ping to b is dropped, a's HTTP
request to b passes and so does b's reply, c's is dropped, b cannot start a flow of its
own; after the rule is removed, a new connection from a is dropped.

Root only (namespaces, veths); skipped with a message otherwise.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from computelab import AGENT, ComputeLab
from netns import nsexec, sh, wait_for

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root for namespaces and veths")
FLOWVM = Path(__file__).with_name("flowvm.py")
JSON = dict[str, Any]
ADDRESSES = {"a": "198.18.71.10", "b": "198.18.71.20", "c": "198.18.71.30"}
FETCH = (
    "import sys, urllib.request\n"
    "try:\n"
    "    with urllib.request.urlopen(sys.argv[1], timeout=float(sys.argv[2])) as r:\n"
    "        print(r.status, r.read().decode().strip())\n"
    "except OSError as exc:\n"
    "    print('failed', type(exc).__name__)\n"
)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[ComputeLab]:
    lab = ComputeLab(tmp_path, flows=True)
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
    made: list[str] = []
    yield made
    for ns in made:
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def add_vm(lab: ComputeLab, made: list[str], name: str, vmi: JSON) -> str:
    """Plug the port into the agent (as the os-vif plugin does), then make its tap: a
    veth pair whose other end is the VM's eth0 in its own namespace."""
    ns, tap, ip = f"vrsg{os.getpid() % 100000}{name}", f"tapsg{name}", ADDRESSES[name]
    port = {
        "id": vmi["uuid"],
        "network": vmi["virtual_network"],
        "mac": vmi["mac_address"],
        "ips": [ip],
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
    sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
    sh("ip", "-n", ns, "link", "set", "lo", "up")
    sh("ip", "-n", ns, "link", "set", "eth0", "up")
    nsexec(ns, sys.executable, str(FLOWVM), "plain", "eth0", check=True)
    wait_for(lambda: (lab.interface(vmi["uuid"]) or {}).get("status") == "up", 15, f"{name} up")
    return ns


def pings(ns: str, ip: str) -> bool:
    return nsexec(ns, "ping", "-c", "2", "-W", "1", ip, check=False).returncode == 0


def fetch(ns: str, url: str, timeout: float = 3.0) -> str:
    return nsexec(ns, sys.executable, "-c", FETCH, url, str(timeout)).stdout.strip()


def port_acl(lab: ComputeLab, port: str) -> JSON | None:
    items = lab.api("GET", "/access-control-lists?limit=1000")["items"]
    return next((a for a in items if a.get("virtual_machine_interface") == port), None)


def test_a_group_allowing_http_from_one_prefix(lab: ComputeLab, vm_namespaces: list[str]) -> None:
    project = lab.create("project", {"name": "sg"})
    web_rule = {
        "direction": "ingress",
        "protocol": "tcp",
        "port_range": [80, 80],
        "remote_prefix": "198.18.71.8/29",
    }
    group = lab.create(
        "security-group", {"name": "web", "parent_uuid": project["uuid"], "rules": [web_rule]}
    )
    net = lab.create(
        "virtual-network",
        {"name": "green", "parent_uuid": project["uuid"], "subnets": [{"cidr": "198.18.71.0/24"}]},
    )
    vmis = {
        n: lab.create(
            "virtual-machine-interface",
            {
                "name": f"vm{n}-eth0",
                "parent_uuid": project["uuid"],
                "virtual_network": net["uuid"],
                "virtual_router": lab.router["uuid"],
                "fixed_ips": [{"ip_address": ip}],
                "security_groups": [group["uuid"]] if n == "b" else [],
            },
        )
        for n, ip in ADDRESSES.items()
    }
    b_id = vmis["b"]["uuid"]
    wait_for(lambda: port_acl(lab, b_id), 15, "b's security-group ACL from the transformer")
    assert port_acl(lab, vmis["a"]["uuid"]) is None, "a port without groups gets no ACL"
    a, b, c = (add_vm(lab, vm_namespaces, n, vmis[n]) for n in "abc")

    (Path(lab.dir) / "www").mkdir()
    (Path(lab.dir) / "www" / "index.html").write_text("hello from b\n")
    www = str(Path(lab.dir) / "www")
    server = subprocess.Popen(
        [
            "ip",
            "netns",
            "exec",
            b,
            sys.executable,
            "-m",
            "http.server",
            "80",
            "--bind",
            ADDRESSES["b"],
            "--directory",
            www,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"http://{ADDRESSES['b']}/"
        wait_for(
            lambda: nsexec(b, "ss", "-ltn", "sport", "= :80").stdout.count("LISTEN") == 1,
            10,
            "b's HTTP server",
        )
        assert not pings(a, ADDRESSES["b"]), "ICMP to b is not allowed in"
        assert fetch(a, url) == "200 hello from b", "TCP 80 from a's prefix and its reply pass"
        assert fetch(c, url).startswith("failed"), "c is outside the allowed prefix"
        assert not pings(b, ADDRESSES["a"]), "b has no egress rule: it starts no flow"
        assert pings(a, ADDRESSES["c"]), "ports without groups are not filtered"

        flows = lab.agent("/introspect/flows")
        http = [
            f for f in flows if f["protocol"] == 6 and f["destination"] == f"{ADDRESSES['b']}:80"
        ]
        assert {(f["source"].split(":")[0], f["action"]) for f in http} == {
            (ADDRESSES["a"], "forward"),
            (ADDRESSES["c"], "drop"),
        }, http

        # Remove the rule: once the agent has the emptied ACL, new connections drop.
        updated = lab.api(
            "PUT",
            f"/security-groups/{group['uuid']}",
            {"rules": [], "description": ""},
        )
        assert updated["rules"] == []
        wait_for(lambda: port_acl(lab, b_id)["entries"] == [], 15, "b's ACL emptied")
        version = port_acl(lab, b_id)["version"]
        wait_for(
            lambda: lab.agent("/introspect")["config"]["revision"] >= version,
            15,
            "the emptied ACL at the agent",
        )
        assert fetch(a, url).startswith("failed"), "no rule left: a new connection drops"
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_default_group_lets_its_members_in_and_no_one_else(
    lab: ComputeLab, vm_namespaces: list[str]
) -> None:
    """Neutron's default group: egress anywhere, ingress from the group's own members.
    a and b are members, c has no group: a and b ping each other, c cannot reach them,
    they can reach c (egress open; c unfiltered)."""
    project = lab.create("project", {"name": "sgdefault"})
    group = lab.create("security-group", {"name": "default", "parent_uuid": project["uuid"]})
    rules = [{"direction": "egress"}, {"direction": "ingress", "remote_group": group["uuid"]}]
    lab.api("PUT", f"/security-groups/{group['uuid']}", {"rules": rules, "description": "default"})
    net = lab.create(
        "virtual-network",
        {"name": "green", "parent_uuid": project["uuid"], "subnets": [{"cidr": "198.18.71.0/24"}]},
    )
    vmis = {
        n: lab.create(
            "virtual-machine-interface",
            {
                "name": f"vm{n}-eth0",
                "parent_uuid": project["uuid"],
                "virtual_network": net["uuid"],
                "virtual_router": lab.router["uuid"],
                "fixed_ips": [{"ip_address": ip}],
                "security_groups": [group["uuid"]] if n in "ab" else [],
            },
        )
        for n, ip in ADDRESSES.items()
    }

    def members_known() -> bool:
        acl = port_acl(lab, vmis["a"]["uuid"])
        return bool(acl) and any(len(e["source"]) == 2 for e in acl["entries"])

    wait_for(members_known, 15, "a's ACL listing both members")
    a, b, c = (add_vm(lab, vm_namespaces, n, vmis[n]) for n in "abc")
    assert pings(a, ADDRESSES["b"]) and pings(b, ADDRESSES["a"]), "members reach each other"
    assert not pings(c, ADDRESSES["a"]), "a non-member does not get in"
    assert pings(a, ADDRESSES["c"]), "egress is open and c is not filtered"
