"""Losing a control node on the multirack lab (make test-multirack deploys it).

Two "VMs" (network namespaces on this machine, each the far end of a veth pair whose
near end is a port's tap inside a compute, plugged with `vrstack-port` as Nova's vif
plugin does) on one network, in racks r1 and r3. They ping each other while one of
the two control nodes is stopped: every agent keeps its session to the other control
node, and no ping may be lost. The stopped node is started again and every agent gets
both sessions back. Run: VRSTACK_MULTIRACK=1 pytest -s tests/lab/test_multirack_ha.py
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from multirack import address, agent_sessions, api, labtool, model, needs_lab, ssh

pytestmark = needs_lab

SUBNET = "198.19.220.0/24"  # inside the VMs' network only (a VRF), never on the fabric
PLACES = {"a": "mr-cmp11", "b": "mr-cmp31"}
CONTROLS = ("mr-ctl1", "mr-ctl2")
PINGS = 150  # at 0.2 s: 30 s of traffic, bounded
WAIT = 120.0  # seconds for sessions and ports to come up


@dataclass
class Vm:
    name: str
    compute: str
    ns: str
    tap: str
    port: dict[str, Any]

    @property
    def ip(self) -> str:
        return str(self.port["fixed_ips"][0]["ip_address"])


def sh(*argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    out = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    assert out.returncode == 0, f"{' '.join(argv)}: {out.stderr}"
    return out


def wait(what: str, check: Any) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"not within {WAIT:.0f}s: {what}"
        time.sleep(2)


def in_container(host: str, *argv: str) -> None:
    nspawn = labtool.running_pid(host, model().cluster)
    init = labtool.container_pid(nspawn) if nspawn else None
    assert init, f"{host} is not running"
    sh("nsenter", "-t", str(init), "-n", *argv)


def all_established(compute: str, controls: tuple[str, ...]) -> bool:
    sessions = agent_sessions(compute)
    return all(sessions.get(address(c)) == "Established" for c in controls)


@pytest.fixture(scope="module")
def vms() -> Iterator[dict[str, Vm]]:
    tag = f"mrha{os.getpid() % 10000}"
    project = api("POST", "/projects", {"name": tag})
    pool = {"start": "198.19.220.10", "end": "198.19.220.99"}
    net = api(
        "POST", "/virtual-networks",
        {"name": tag, "parent_uuid": project["uuid"],
         "subnets": [{"cidr": SUBNET, "allocation_pools": [pool]}]},
    )  # fmt: skip
    routers = {v["name"]: v["uuid"] for v in api("GET", "/virtual-routers?limit=100")["items"]}
    made: dict[str, Vm] = {}
    try:
        for key, compute in PLACES.items():
            port = api(
                "POST", "/virtual-machine-interfaces",
                {"name": f"{tag}-{key}", "parent_uuid": project["uuid"],
                 "virtual_network": net["uuid"], "virtual_router": routers[compute]},
            )  # fmt: skip
            made[key] = Vm(key, compute, f"{tag}-{key}", f"tap{tag}{key}"[:15], port)

        def instance() -> str:
            items = api("GET", f"/routing-instances?parent_uuid={net['uuid']}")["items"]
            return ":".join(items[0]["fq_name"]) if items else ""

        wait("the network's routing instance", instance)
        for vm in made.values():
            add = ssh(
                vm.compute,
                f"/usr/local/bin/vrstack-port add --id {vm.port['uuid']} --instance {instance()} "
                f"--network {net['uuid']} --mac {vm.port['mac_address']} --ip {vm.ip} --tap {vm.tap}",
            )
            assert add.returncode == 0, f"{vm.compute}: {add.stdout}{add.stderr}"
            sh("ip", "netns", "add", vm.ns)
            in_container(
                vm.compute, "ip", "link", "add", vm.tap, "mtu", "1450", "type", "veth",
                "peer", "name", "eth0", "netns", vm.ns,
            )  # fmt: skip
            in_container(vm.compute, "ip", "link", "set", vm.tap, "up")
            sh("ip", "-n", vm.ns, "link", "set", "eth0", "address", vm.port["mac_address"], "up")
            sh("ip", "-n", vm.ns, "addr", "add", f"{vm.ip}/24", "dev", "eth0")
        a, b = made["a"], made["b"]
        wait(
            f"{a.name} reaches {b.name}",
            lambda: subprocess.run(
                ["ip", "netns", "exec", a.ns, "ping", "-c", "1", "-W", "1", b.ip],
                capture_output=True, timeout=10, check=False,
            ).returncode == 0,
        )  # fmt: skip
        yield made
    finally:
        for vm in made.values():
            ssh(vm.compute, f"/usr/local/bin/vrstack-port delete --id {vm.port['uuid']}")
            subprocess.run(["ip", "netns", "del", vm.ns], capture_output=True, check=False)
            api("DELETE", f"/virtual-machine-interfaces/{vm.port['uuid']}")
        api("DELETE", f"/virtual-networks/{net['uuid']}")
        api("DELETE", f"/projects/{project['uuid']}")


def lost_pings(src: Vm, dst: Vm, during: Any) -> int:
    """Ping dst from src PINGS times, 0.2 s apart, calling `during` once it is going."""
    ping = subprocess.Popen(
        ["ip", "netns", "exec", src.ns, "ping", "-i", "0.2", "-c", str(PINGS), "-W", "1", dst.ip],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    time.sleep(3)
    during()
    out = ping.communicate(timeout=PINGS * 0.2 + 30)[0]
    found = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    assert found, out
    return int(found.group(1)) - int(found.group(2))


def test_stop_one_control_node(vms: dict[str, Vm]) -> None:
    computes = sorted(h.name for h in model().hosts if "compute" in h.roles)
    stopped, other = CONTROLS
    try:
        lost = lost_pings(
            vms["a"], vms["b"], lambda: ssh(stopped, "systemctl stop vrstack-control.service")
        )
        print(f"control node {stopped} stopped: {lost} of {PINGS} pings lost")
        for c in computes:
            assert agent_sessions(c).get(address(other)) == "Established", c
        assert lost == 0
    finally:
        ssh(stopped, "systemctl start vrstack-control.service")
    for c in computes:
        wait(f"{c}'s sessions to both control nodes", lambda c=c: all_established(c, CONTROLS))
