"""Losing parts of the multirack lab (make test-multirack deploys it).

Three "VMs" (network namespaces on this machine, each the far end of a veth pair whose
near end is a port's tap inside a compute, plugged with `vrstack-port` as Nova's vif
plugin does) on one network, in racks r1, r2 and r3. They ping each other while:

- one of the two control nodes is stopped: every agent keeps its session to the other
  control node, and no ping may be lost; started again, every agent gets both back;
- rack r3's link to the spine is cut: r1 and r2 keep talking (no ping lost) and keep
  their sessions; when the link returns, r3's agents get their sessions back by
  themselves and r3's VM is reached again;
- a controller (r3's, not the VIP's) is shut down: the config API keeps answering
  through the VIP, an object written while it is away is kept, and VM traffic loses
  nothing; started again, its own config API serves both objects.

Run: VRSTACK_MULTIRACK=1 pytest -s tests/lab/test_multirack_ha.py
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from multirack import INVENTORY, REPO, address, agent_sessions, api, labtool, model, needs_lab, ssh

pytestmark = needs_lab

SUBNET = "198.19.220.0/24"  # inside the VMs' network only (a VRF), never on the fabric
PLACES = {"a": "mr-cmp11", "b": "mr-cmp31", "c": "mr-cmp21"}
CONTROLS = ("mr-ctl1", "mr-ctl2")
CUT_RACK = "r3"  # no control node and not the VIP's rack: the others must not notice
AWAY = "mr-ctl3"  # a controller (etcd member, API backend) that does not hold the VIP
API_LIMIT = 10.0  # seconds the config API may not answer through the VIP
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
        for far in ("b", "c"):
            wait(f"a reaches {far}", lambda far=far: reaches(made["a"], made[far]))
        yield made
    finally:
        for vm in made.values():
            ssh(vm.compute, f"/usr/local/bin/vrstack-port delete --id {vm.port['uuid']}")
            subprocess.run(["ip", "netns", "del", vm.ns], capture_output=True, check=False)
            api("DELETE", f"/virtual-machine-interfaces/{vm.port['uuid']}")
        api("DELETE", f"/virtual-networks/{net['uuid']}")
        api("DELETE", f"/projects/{project['uuid']}")


def reaches(src: Vm, dst: Vm) -> bool:
    return (
        subprocess.run(
            ["ip", "netns", "exec", src.ns, "ping", "-c", "1", "-W", "1", dst.ip],
            capture_output=True, timeout=10, check=False,
        ).returncode
        == 0
    )  # fmt: skip


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


def spine_filter(action: str, link: str) -> None:
    """Add (-I) or delete (-D) the spine's rules that drop everything through `link`:
    a cut that leaves the links and routes as they are, so restoring it is exact."""
    spine = labtool.spine_netns(model().cluster)
    for way in ("-i", "-o"):
        run = subprocess.run(
            ["ip", "netns", "exec", spine, "iptables", action, "FORWARD", way, link, "-j", "DROP"],
            capture_output=True, text=True, timeout=30, check=False,
        )  # fmt: skip
        assert run.returncode == 0 or action == "-D", f"iptables {action}: {run.stderr}"


def test_cut_one_rack_link(vms: dict[str, Vm]) -> None:
    link = labtool.spine_veth(CUT_RACK)
    cut_off = sorted(h.name for h in model().hosts if h.rack == CUT_RACK and "compute" in h.roles)
    others = sorted(
        h.name for h in model().hosts if h.rack != CUT_RACK and "compute" in h.roles
    )  # fmt: skip
    assert vms["b"].compute in cut_off and vms["c"].compute in others
    try:
        lost = lost_pings(vms["a"], vms["c"], lambda: spine_filter("-I", link))
        print(f"rack {CUT_RACK} cut from the spine: {lost} of {PINGS} pings lost between r1 and r2")
        assert not reaches(vms["a"], vms["b"]), f"{vms['b'].compute} answered through a cut link"
        for c in others:
            assert all_established(c, CONTROLS), f"{c} lost a session while {CUT_RACK} was cut"
        assert lost == 0
    finally:
        spine_filter("-D", link)
    back = time.monotonic()
    for c in cut_off:
        wait(f"{c}'s sessions after the cut", lambda c=c: all_established(c, CONTROLS))
    wait("a reaches b again", lambda: reaches(vms["a"], vms["b"]))
    print(f"rack {CUT_RACK} back: sessions and traffic in {time.monotonic() - back:.1f}s")


class ApiPoller(threading.Thread):
    """GET the config API through the VIP every 0.25 s; the longest run of failures."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.longest = 0.0
        self.rounds = 0

    def run(self) -> None:
        failing_since: float | None = None
        while not self.stop.is_set():
            self.rounds += 1
            try:
                api("GET", "/projects?limit=1")
                failing_since = None
            except (AssertionError, OSError):
                now = time.monotonic()
                failing_since = failing_since or now
                self.longest = max(self.longest, now - failing_since)
            time.sleep(0.25)


def direct_api(host: str, method: str, path: str) -> Any:
    """One request to a controller's own config API (not through the VIP)."""
    url = model().endpoints["api_url"]
    vip = re.sub(r"^https?://([^:/]+).*$", r"\1", url)
    return api(method, path, None, base=url.replace(vip, address(host)))


def test_stop_one_controller(vms: dict[str, Vm]) -> None:
    project = api("POST", "/projects", {"name": f"mrctl-before-{os.getpid() % 10000}"})
    poller = ApiPoller()
    poller.start()
    pid = labtool.running_pid(AWAY, model().cluster)
    assert pid, f"{AWAY} is not running"
    later: dict[str, Any] = {}

    def away() -> None:
        os.kill(pid, signal.SIGTERM)  # the nspawn shuts the host down cleanly
        time.sleep(10)
        later.update(api("POST", "/projects", {"name": f"mrctl-during-{os.getpid() % 10000}"}))

    try:
        lost = lost_pings(vms["a"], vms["b"], away)
        time.sleep(3)
        poller.stop.set()
        poller.join(timeout=30)
        print(
            f"controller {AWAY} stopped: {lost} of {PINGS} pings lost; config API through the "
            f"VIP: longest outage {poller.longest:.1f}s over {poller.rounds} rounds"
        )
        assert lost == 0
        assert poller.longest <= API_LIMIT, f"no config API for {poller.longest:.1f}s"
        assert later, "no object could be written while the controller was away"
        assert api("GET", f"/projects/{project['uuid']}")["name"] == project["name"]
    finally:
        poller.stop.set()
        gone_by = time.monotonic() + 120
        while time.monotonic() < gone_by and os.path.exists(f"/proc/{pid}"):
            time.sleep(1)
        subprocess.run(
            [sys.executable, "tools/lab.py", "up", "--inventory", str(INVENTORY)],
            cwd=REPO, capture_output=True, text=True, timeout=900, check=True,
        )  # fmt: skip
    back = time.monotonic()
    # Its own config API (on its own etcd member) has what was written while it was away.
    wait(f"{AWAY}'s config API", lambda: direct_api(AWAY, "GET", "/projects?limit=1") is not None)
    for obj in (project, later):
        found = direct_api(AWAY, "GET", f"/projects/{obj['uuid']}")
        assert found and found["name"] == obj["name"], f"{AWAY} lacks {obj['name']}"
    print(
        f"controller {AWAY} back: its config API serves both objects {time.monotonic() - back:.1f}s after start"
    )
    for obj in (project, later):
        api("DELETE", f"/projects/{obj['uuid']}")
