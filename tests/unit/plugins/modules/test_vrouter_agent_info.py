"""vrouter_agent_info's reading code (module_utils/vrouter_agent.py) against a real
vrstack-agent process on a real userspace vrouterd, with a config API, a control node
and a second compute (a simulated agent) publishing its VM."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from ansible_collections.vrstack.cloud.plugins.module_utils import vrouter_agent

ROOT = Path(__file__).resolve().parents[4]
SDN_SRC = ROOT / "files" / "sdn-src"
sys.path.insert(0, str(SDN_SRC))
sys.path.insert(0, str(SDN_SRC / "tests" / "agent"))
sys.path.insert(0, str(SDN_SRC / "tests" / "control"))
from agentkit import eventually  # noqa: E402
from controlkit import Cluster, instance_name, running_cluster  # noqa: E402

from vrstack.config.testing import free_port  # noqa: E402
from vrstack.control.simagent import SimAgent  # noqa: E402
from vrstack.control.xmpp import Nexthop  # noqa: E402
from vrstack.datapath.client import DatapathClient  # noqa: E402
from vrstack.datapath.codec import Obj, Op  # noqa: E402
from vrstack.testing import build_vrouterd, vrouterds  # noqa: E402


@pytest.fixture(scope="module")
def vrouterd_binary() -> Path:
    return build_vrouterd()


@pytest.fixture
def vrouterd(vrouterd_binary: Path, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """Start a userspace datapath named NAME (1024 flows); returns its control socket."""
    with vrouterds(vrouterd_binary, tmp_path) as start:
        yield start


def agent_config(
    workdir: Path, url: str, name: str, address: str, controls: list[str], **more: Any
) -> Path:
    """The agent's config file: NAME at fabric ADDRESS, its API on URL's port."""
    path = workdir / "agent.yaml"
    settings = {"name": name, "controls": controls, "fabric": {"address": address}}
    settings |= {"listen": {"port": int(url.rsplit(":", 1)[1])}, "retry": 0.2, **more}
    path.write_text(yaml.safe_dump(settings))
    return path


@contextlib.asynccontextmanager
async def agent_process(config: Path) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "PYTHONPATH": str(SDN_SRC)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vrstack.agent.main", "--config", str(config), env=env
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
            await asyncio.wait_for(proc.wait(), 15)


async def read(url: str, **kw: Any) -> dict[str, Any]:
    """The module's reading code, off the event loop (the control node runs on it)."""
    get = vrouter_agent.open_url_getter(url, timeout=5)
    return await asyncio.to_thread(vrouter_agent.read, get, **kw)


def add_flow(sock: Path, vrf: int, sip: str, dip: str, sport: int, dport: int) -> None:
    with DatapathClient(str(sock)) as c:
        c.call(
            Op.ADD, Obj.FLOW, FL_VRF=vrf, FL_SIP=ipaddress.ip_address(sip),
            FL_DIP=ipaddress.ip_address(dip), FL_PROTO=6, FL_SPORT=sport, FL_DPORT=dport,
            FL_ACTION=1,
        )  # fmt: skip


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(str(tmp_path / "config.db")) as c:
        yield c


@pytest.mark.asyncio
async def test_reads_sessions_interfaces_routes_flows_and_datapath(
    cluster: Cluster, vrouterd: Callable[[str], Path], tmp_path: Path
) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    inst = instance_name(await cluster.instance_of(blue))
    for name, addr in (("compute1", "198.18.2.11"), ("compute2", "198.18.2.12")):
        await c.create("virtual-router", {"name": name, "fabric_address": addr})
    node = await cluster.start_node("ctl-a", "127.0.0.1")
    dead = free_port()  # a second control node that is not there
    dp = vrouterd("dp")
    url = f"http://127.0.0.1:{free_port()}"
    config = agent_config(
        tmp_path,
        url,
        "compute1",
        "198.18.2.11",
        [f"127.0.0.1:{node.xmpp_port}", f"127.0.0.1:{dead}"],
        datapath={"socket": str(dp), "flow_file": str(dp.parent / "flows")},
        ports_file=str(tmp_path / "ports.json"),
        labels={"start": 1000, "end": 1999},
    )
    other = SimAgent("compute2", "127.0.0.1", node.xmpp_port)
    await other.connect()
    await other.subscribe(inst)
    await other.publish(inst, {"198.18.10.4/32": Nexthop("198.18.2.12", 2001, 0, ("MPLSoUDP",))})

    async with agent_process(config) as proc, aiohttp.ClientSession() as http:

        async def up() -> bool:
            with contextlib.suppress(aiohttp.ClientError):
                async with http.get(url + "/health") as r:
                    return r.status == 200
            return False

        for _attempt in range(300):
            if await up():
                break
            await asyncio.sleep(0.05)
        port = {"id": "p1", "instance": inst, "network": "blue", "mac": "02:00:c6:12:0a:03"}
        port |= {"ips": ["198.18.10.3"], "tap": "tap-p1"}
        async with http.post(url + "/ports", json=port) as r:
            assert r.status == 201, await r.text()

        async def programmed() -> dict[str, Any] | None:
            got = await read(url, instances=["all"])
            routes = got["routes"].get(inst, [])
            ok = got["interfaces"] and got["interfaces"][0]["state"] == "active"
            return got if ok and any(r["prefix"] == "198.18.10.4/32" for r in routes) else None

        got = None
        for _attempt in range(150):
            got = await programmed()
            if got:
                break
            await asyncio.sleep(0.1)
        assert got, "the port and the remote route did not show within 15 s"

        assert got["name"] == "compute1" and got["fabric_address"] == "198.18.2.11"
        assert got["headless"] is False and got["sessions_established"] == 1
        states = {s["address"]: s["state"] for s in got["sessions"]}
        assert states[f"127.0.0.1:{node.xmpp_port}"] == "Established"
        assert states[f"127.0.0.1:{dead}"] != "Established"
        assert got["config"]["synced"] is True and got["config"]["revision"] > 0
        (iface,) = got["interfaces"]
        assert (iface["id"], iface["network"], iface["instance"]) == ("p1", "blue", inst)
        assert (iface["ips"], iface["mac"], iface["tap"]) == (
            ["198.18.10.3"],
            "02:00:c6:12:0a:03",
            "tap-p1",
        )
        assert 1000 <= iface["label"] <= 1999 and iface["vif"] >= 2
        # Programmed, but its tap does not exist on this machine: reported down, and why.
        assert iface["state"] == "active" and iface["status"] == "down"
        assert "tap-p1" in iface["detail"]
        (vrf,) = got["vrfs"]
        assert vrf["instance"] == inst and vrf["ports"] == ["p1"] and vrf["vrf"] == iface["vrf"]
        # Our own VM is local (and comes back from the control node too); the other
        # compute's VM comes from the control node with its nexthop and label.
        routes = {(r["prefix"], r["source"]): r for r in got["routes"][inst]}
        local = routes[("198.18.10.3/32", "local")]
        assert local["nexthops"] == [
            {"address": "local", "label": iface["label"], "vni": 0, "encap": []}
        ]
        assert ("198.18.10.4/32", "local") not in routes
        remote = routes[("198.18.10.4/32", "control")]
        assert [(h["address"], h["label"]) for h in remote["nexthops"]] == [("198.18.2.12", 2001)]
        dpath = got["datapath"]
        assert dpath["mode"] == "user" and dpath["target"] == str(dp) and dpath["connected"]
        # vif 0 fabric, vif 1 agent, vif 2 the port; the tables vrouterd was given.
        assert dpath["tables"]["vifs"] == {"used": 3, "size": 256}
        assert dpath["tables"]["labels"] == {"used": 1, "size": 1000}
        assert dpath["tables"]["routes"]["used"] >= 2
        assert dpath["tables"]["flows"] == {"used": 0, "size": 1024}
        assert "flows" not in got  # not asked

        # Flows, filtered by instance name (or index), address and port.
        add_flow(dp, iface["vrf"], "198.18.10.3", "198.18.10.4", 40001, 80)
        add_flow(dp, iface["vrf"], "198.18.10.3", "198.18.10.4", 40002, 443)
        add_flow(dp, iface["vrf"] + 5, "198.18.10.3", "198.18.10.9", 40003, 80)
        flows = (await read(url, subsets=["flows"]))["flows"]
        assert len(flows) == 3
        one = await read(url, subsets=["flows"], flow_vrf=inst, flow_port=80)
        assert [f["destination"] for f in one["flows"]] == ["198.18.10.4:80"]
        assert one["flows"][0]["protocol"] == 6 and one["flows"][0]["action"] == "forward"
        by_ip = await read(url, subsets=["flows"], flow_ip="198.18.10.9")
        assert [f["vrf"] for f in by_ip["flows"]] == [iface["vrf"] + 5]
        by_index = await read(url, subsets=["flows"], flow_vrf=str(iface["vrf"]), flow_limit=1)
        assert len(by_index["flows"]) == 1
        assert (await read(url, subsets=["datapath"]))["datapath"]["tables"]["flows"]["used"] == 3

        # Bad input names the option.
        with pytest.raises(vrouter_agent.AgentError, match=r"instances: 'demo:nope'.*no local VRF"):
            await read(url, instances=["demo:nope"])
        with pytest.raises(vrouter_agent.AgentError, match=r"flow_vrf: 'nope'"):
            await read(url, subsets=["flows"], flow_vrf="nope")
        with pytest.raises(vrouter_agent.AgentError, match=r"gather: unknown subset 'bogus'"):
            await read(url, subsets=["bogus"])
        # An HTTP error names the path and the status.
        get = vrouter_agent.open_url_getter(url, timeout=5)
        with pytest.raises(vrouter_agent.AgentError, match=r"^GET /introspect/nope: 404: ") as err:
            await asyncio.to_thread(get, "/introspect/nope")
        assert err.value.status == 404

        proc.terminate()
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    await other.close()

    # The agent is down: a clear failure that says where to look.
    with pytest.raises(vrouter_agent.AgentError) as err:
        await read(url)
    msg = str(err.value)
    assert f"cannot reach the vrouter agent at {url}" in msg
    assert "systemctl status vrstack-agent" in msg


@pytest.mark.asyncio
async def test_headless_agent_is_reported(vrouterd: Callable[[str], Path], tmp_path: Path) -> None:
    """No control node at all: both sessions down, headless, config not synced."""
    dp = vrouterd("dp")
    url = f"http://127.0.0.1:{free_port()}"
    controls = [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]
    config = agent_config(
        tmp_path, url, "compute9", "198.18.2.19", controls, datapath={"socket": str(dp)}
    )
    async with agent_process(config):
        got: dict[str, Any] = {}

        def answered() -> bool:
            with contextlib.suppress(vrouter_agent.AgentError):
                got.update(vrouter_agent.read(vrouter_agent.open_url_getter(url, 2)))
                return True
            return False

        assert await eventually(answered, 15, "agent answers")
        assert got["headless"] is True and got["sessions_established"] == 0
        assert got["config"]["synced"] is False and got["interfaces"] == []
        assert "flows" not in got["datapath"]["tables"]  # no flow file configured
