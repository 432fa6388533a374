"""Our BGP speaker against BIRD 2 over IPv4 L3VPN (eBGP), BIRD in a network namespace.

The test makes a namespace and a veth pair on a /29 from 198.19.0.0/16, runs `bird`
inside with a static VPN route carrying our network's route target, and peers a control
node with it. BIRD must receive our VM route (RD, route target, label, AS path) and
our agent must receive BIRD's route in the network's instance; withdrawals go both ways.
With a TCP MD5 password (BIRD's `password`), the same password establishes and another
one gives no session.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import netnskit
import pytest
from controlkit import Cluster, instance_name

from vrstack.control.simagent import SimAgent
from vrstack.control.xmpp import Nexthop

pytestmark = pytest.mark.asyncio
BIRD_AS = 65001


class BirdLab:
    """A namespace with BIRD on one end of a veth pair, our side in this namespace."""

    def __init__(self, workdir: Path) -> None:
        n = os.getpid() % 60
        self.ns = f"vrsctl-bird-{os.getpid()}"
        self.veth = f"vrsb{os.getpid() % 100000}"
        self.net = f"198.19.{128 + n}"
        self.ours, self.bird, self.hop = f"{self.net}.1", f"{self.net}.2", f"{self.net}.3"
        self.compute = f"{self.net}.5"  # a compute's address on the shared link
        self.workdir = workdir
        self.sock = str(workdir / "bird.ctl")
        self.proc: subprocess.Popen[bytes] | None = None

    def sh(self, *cmd: str) -> None:
        subprocess.run(cmd, check=True, capture_output=True, timeout=30)

    def up(self, route_target: str, password: str = "", config: str = "") -> None:
        """Start BIRD with `config`, default a passive peer importing everything."""
        self.sh("ip", "netns", "add", self.ns)
        netnskit.veth(self.veth, ("", self.ours), (self.ns, self.bird))
        inns = ("ip", "netns", "exec", self.ns)
        _, asn, num = route_target.split(":")
        password_line = f'\n  password "{password}";' if password else ""
        conf = self.workdir / "bird.conf"
        conf.write_text(
            config
            or f"""
router id {self.bird};
vpn4 table vpntab4;
protocol device {{}}
protocol static gwvpn {{
  vpn4 {{ table vpntab4; }};
  route {BIRD_AS}:10 198.18.200.0/24 via {self.hop} mpls 300 {{
    bgp_ext_community.add((rt, {asn}, {num}));
  }};
}}
protocol bgp vrstack {{
  local {self.bird} as {BIRD_AS};
  neighbor {self.ours} as 64512;
  passive on;
  hold time 30;{password_line}
  vpn4 mpls {{ table vpntab4; igp table master4; import all; export all; }};
}}
"""
        )
        log = open(self.workdir / "bird.out", "wb")  # noqa: SIM115 - closed by the process end
        self.proc = subprocess.Popen(
            [*inns, "bird", "-f", "-c", str(conf), "-s", self.sock], stdout=log, stderr=log
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bird exited: {(self.workdir / 'bird.out').read_text()}")
            if os.path.exists(self.sock) and "ready" in self.birdc("show", "status"):
                return
            time.sleep(0.1)
        raise RuntimeError("bird did not start")

    def birdc(self, *args: str) -> str:
        out = subprocess.run(
            ["birdc", "-s", self.sock, *args], capture_output=True, text=True, timeout=10
        )
        return out.stdout

    def down(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        subprocess.run(["ip", "link", "del", self.veth + "a"], capture_output=True, timeout=30)
        subprocess.run(["ip", "netns", "del", self.ns], capture_output=True, timeout=30)


@pytest.fixture
def bird_lab(tmp_path: Path) -> Iterator[BirdLab]:
    if shutil.which("bird") is None or shutil.which("birdc") is None:
        pytest.skip("BIRD 2 is not installed (apt-get install bird2): BGP interop untested")
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 to make a network namespace: BGP interop untested")
    lab = BirdLab(tmp_path)
    try:
        yield lab
    finally:
        lab.down()


async def bird_shows(lab: BirdLab, text: str, present: bool = True, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while True:
        out = await asyncio.to_thread(lab.birdc, "show", "route", "table", "vpntab4", "all")
        if (text in out) == present:
            return out
        if time.monotonic() > deadline:
            raise AssertionError(f"bird table {'lacks' if present else 'has'} {text}:\n{out}")
        await asyncio.sleep(0.1)


async def test_l3vpn_routes_both_ways_with_bird(cluster: Cluster, bird_lab: BirdLab) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    ri = await cluster.instance_of(blue)
    inst = instance_name(ri)
    await asyncio.to_thread(bird_lab.up, ri["route_target"])
    await c.create(
        "bgp-router",
        {
            "name": "gw1",
            "address": bird_lab.bird,
            "asn": BIRD_AS,
            "role": "gateway",
            "port": 179,
            "hold_time": 30,
        },
    )
    node = await cluster.start_node("ctl-a", bird_lab.ours)
    agent = SimAgent("compute1", "127.0.0.1", node.xmpp_port)
    await agent.connect()
    await agent.subscribe(inst)
    await agent.publish(inst, {"198.18.10.3/32": Nexthop(bird_lab.compute, 17, 0, ("MPLSoUDP",))})

    # BIRD has our VPN route: our RD, the network's route target, label, our AS.
    out = await bird_shows(bird_lab, "198.18.10.3/32")
    block = out[out.index(f"{bird_lab.ours}:") :].split("\n\n")[0]
    assert f"{bird_lab.ours}:" in block and "198.18.10.3/32" in block.splitlines()[0]
    _, asn, num = ri["route_target"].split(":")
    assert f"(rt, {asn}, {num})" in block
    assert "BGP.mpls_label_stack: 17" in block
    assert "BGP.as_path: 64512" in block
    assert f"BGP.next_hop: {bird_lab.compute}" in block

    # BIRD's static VPN route, tagged with our target, is in our instance for the agent.
    hops = await agent.wait_for(lambda s: s.routes[inst].get("198.18.200.0/24"), timeout=20)
    assert [(h.address, h.label) for h in hops] == [(bird_lab.hop, 300)]
    peers = node.introspect()["bgp_peers"]
    assert peers[0]["state"] == "Established" and peers[0]["received_routes"] == 1

    # Withdrawals both ways.
    await agent.retract(inst, ["198.18.10.3/32"])
    await bird_shows(bird_lab, "198.18.10.3/32", present=False)
    await asyncio.to_thread(bird_lab.birdc, "disable", "gwvpn")
    await agent.wait_for(lambda s: "198.18.200.0/24" not in s.routes[inst], timeout=20)
    await agent.close()


async def bird_protocol(lab: BirdLab) -> str:
    return await asyncio.to_thread(lab.birdc, "show", "protocols", "vrstack")


@pytest.mark.parametrize("ours", ["gw-md5-password-0001", "not-birds-password"])
async def test_md5_password_with_bird(cluster: Cluster, bird_lab: BirdLab, ours: str) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    ri = await cluster.instance_of(await cluster.network(project, "blue", "198.18.10.0/24"))
    await asyncio.to_thread(bird_lab.up, ri["route_target"], "gw-md5-password-0001")
    await c.create(
        "bgp-router",
        {"name": "gw1", "address": bird_lab.bird, "asn": BIRD_AS, "role": "gateway"},
    )
    node = await cluster.start_node(
        "ctl-a", bird_lab.ours, bgp_peer_passwords={bird_lab.bird: ours}
    )
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        peers = node.introspect()["bgp_peers"]
        if peers and peers[0]["state"] == "Established":
            break
        await asyncio.sleep(0.2)
    peers = node.introspect()["bgp_peers"]
    assert peers[0]["auth"] == "md5"
    if ours == "gw-md5-password-0001":
        assert peers[0]["state"] == "Established", peers
        assert "Established" in await bird_protocol(bird_lab)
        return
    # Another password: no session on either side after many attempts, nothing crashed.
    assert peers[0]["state"] != "Established" and peers[0]["flaps"] == 0, peers
    assert "TCP MD5" in peers[0]["last_error"], peers
    assert "Established" not in await bird_protocol(bird_lab)
    assert bird_lab.proc is not None and bird_lab.proc.poll() is None
    assert node.health()["bgp"] == "running"  # the speaker itself is up
