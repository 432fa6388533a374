"""`vrstack-agent` as a process: bad config files, the port API and `vrstack-port`, the
introspect API, clean stop, and ports replayed after a restart."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from agentkit import dp_route, eventually
from controlkit import Cluster, instance_name

from vrstack.agent.main import main
from vrstack.config.testing import free_port
from vrstack.control.simagent import SimAgent

SRC = Path(__file__).resolve().parents[2]


def write(tmp_path: Path, body: Any, name: str = "agent.yaml") -> str:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(body) if not isinstance(body, str) else body)
    return str(p)


GOOD = {
    "name": "compute1",
    "controls": ["127.0.0.1:5269"],
    "fabric": {"address": "198.18.2.11"},
}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({**GOOD, "controls": []}, "controls"),
        ({**GOOD, "controls": ["nohost"]}, "controls[0]"),
        ({**GOOD, "fabric": {"address": "198.18.2.300"}}, "fabric.address"),
        ({**GOOD, "fabric": {"address": "198.18.2.11", "mac": "zz"}}, "fabric.mac"),
        ({**GOOD, "labels": {"start": 500, "end": 100}}, "labels"),
        ({k: v for k, v in GOOD.items() if k != "name"}, "name"),
        ({**GOOD, "config_api": {"url": "http://127.0.0.1:8082"}}, "config_api.token"),
        ({**GOOD, "config_api": {"url": "ftp://x", "token": "t"}}, "config_api.url"),
        ({**GOOD, "tap_poll": 0}, "tap_poll"),
        (
            {**GOOD, "analytics": {"url": "http://127.0.0.1:8081", "flow_interval": 0.5}},
            "analytics.flow_interval",
        ),
        (
            {**GOOD, "analytics": {"url": "http://127.0.0.1:8081", "max_flow_records": 0}},
            "analytics.max_flow_records",
        ),
    ],
)
def test_bad_config_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: Any, field: str
) -> None:
    path = write(tmp_path, body)
    assert main(["--config", path]) == 2
    err = capsys.readouterr().err
    assert f"{path}: {field}" in err


@contextlib.asynccontextmanager
async def agent_process(config: str) -> AsyncIterator[asyncio.subprocess.Process]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "vrstack.agent.main", "--config", config, env=env
    )
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


async def port_cli(url: str, *args: str) -> tuple[int, str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "vrstack.agent.portcli",
        "--agent",
        url,
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, out.decode()


async def get(http: aiohttp.ClientSession, url: str) -> Any:
    async with http.get(url) as r:
        return r.status, await r.json()


@pytest.mark.asyncio
async def test_port_api_introspect_and_replay(
    cluster: Cluster, vrouterd: Callable[[str], Path], tmp_path: Path
) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    inst = instance_name(await cluster.instance_of(blue))
    await c.create("virtual-router", {"name": "compute1", "fabric_address": "198.18.2.11"})
    node = await cluster.start_node("ctl-a", "127.0.0.1")
    dead = free_port()  # a second control node that is not there: its session stays down
    dp = vrouterd("dp")
    http_port = free_port()
    url = f"http://127.0.0.1:{http_port}"
    config = write(
        tmp_path,
        {
            "name": "compute1",
            "controls": [f"127.0.0.1:{node.xmpp_port}", f"127.0.0.1:{dead}"],
            "fabric": {"address": "198.18.2.11"},
            "datapath": {"socket": str(dp)},
            "ports_file": str(tmp_path / "ports.json"),
            "labels": {"start": 1000, "end": 1999},
            "listen": {"port": http_port},
            "retry": 0.2,
        },
    )
    watcher = SimAgent("watcher", "127.0.0.1", node.xmpp_port)
    await watcher.connect()
    await watcher.subscribe(inst)
    async with aiohttp.ClientSession() as http:

        async def healthy() -> None:
            for _ in range(300):
                with contextlib.suppress(aiohttp.ClientError):
                    status, _ = await get(http, url + "/health")
                    if status == 200:
                        return
                await asyncio.sleep(0.05)
            raise AssertionError("agent not healthy")

        async with agent_process(config) as proc:
            await healthy()
            rc, out = await port_cli(url, "add", "--id", "p1", "--instance", inst,
                                     "--network", "blue", "--mac", "02:00:c6:12:0a:03",
                                     "--ip", "198.18.10.3", "--tap", "tap-p1")  # fmt: skip
            assert rc == 0, out
            rc, out = await port_cli(url, "add", "--id", "p2", "--instance", inst,
                                     "--network", "blue", "--mac", "nope")  # fmt: skip
            assert rc == 2 and "mac" in out
            rc, out = await port_cli(url, "delete", "--id", "nothere")
            assert rc == 2 and "nothere" in out
            hop = await watcher.wait_for(lambda s: s.routes[inst].get("198.18.10.3/32"))
            assert hop[0].address == "198.18.2.11" and 1000 <= hop[0].label <= 1999

            _, ifs = await get(http, url + "/introspect/interfaces")
            assert [(i["id"], i["tap"], i["label"]) for i in ifs] == [
                ("p1", "tap-p1", hop[0].label)
            ]
            _, vrfs = await get(http, url + "/introspect/vrfs")
            assert vrfs[0]["instance"] == inst and vrfs[0]["ports"] == ["p1"]
            assert await eventually(lambda: dp_route(dp, vrfs[0]["vrf"], "198.18.10.3/32"))
            _, routes = await get(http, url + f"/introspect/routes?instance={inst}")
            assert routes[0]["prefix"] == "198.18.10.3/32" and routes[0]["source"] == "local"
            status, _ = await get(http, url + "/introspect/routes?instance=nope")
            assert status == 404
            _, intro = await get(http, url + "/introspect")
            s = intro["sessions"]
            assert s[0]["state"] == "Established" and s[1]["state"] != "Established"
            assert intro["counters"]["ports"] == 1 and intro["counters"]["dp_errors"] == 0
            assert intro["config"]["objects"] >= 2  # global-config and our virtual-router

            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
        # The agent's session ended: the node withdrew the route.
        await watcher.wait_for(lambda s: "198.18.10.3/32" not in s.routes[inst])

        async with agent_process(config) as proc:
            await healthy()
            hop2 = await watcher.wait_for(lambda s: s.routes[inst].get("198.18.10.3/32"))
            assert hop2[0].label == hop[0].label  # same port, same first label
            _, ifs = await get(http, url + "/introspect/interfaces")
            assert [i["id"] for i in ifs] == ["p1"]
            rc, out = await port_cli(url, "delete", "--id", "p1")
            assert rc == 0, out
            await watcher.wait_for(lambda s: "198.18.10.3/32" not in s.routes[inst])
            assert await eventually(lambda: dp_route(dp, vrfs[0]["vrf"], "198.18.10.3/32") is None)
            proc.send_signal(signal.SIGTERM)
            assert await asyncio.wait_for(proc.wait(), 15) == 0
    await watcher.close()
