"""vrstack-control as a real process: config file, health, introspect, agents, SIGTERM,
and clear errors for bad config files."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from controlkit import ASN, Cluster, instance_name

from vrstack.config.testing import ADMIN_TOKEN, Daemon, free_port, wait_until
from vrstack.control.main import main
from vrstack.control.simagent import SimAgent
from vrstack.control.xmpp import Nexthop


def config(url: str, bgp_port: int, **extra: Any) -> dict[str, Any]:
    return {
        "name": "ctl-d",
        "api": {"url": url, "token": ADMIN_TOKEN},
        "listen": {"host": "127.0.0.1", "port": 0},
        "bgp": {"address": "127.0.0.31", "port": bgp_port, "connect_retry": 0.5},
        "xmpp": {"host": "127.0.0.1", "port": 0, "hold_time": 30},
        "log": {"level": "info"},
        **extra,
    }


@pytest.mark.asyncio
async def test_daemon_serves_agents_and_stops_cleanly(cluster: Cluster, tmp_path: Path) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    inst = instance_name(await cluster.instance_of(blue))
    # A second control node in this process, peered with the daemon over iBGP.
    ports = free_port(), free_port()
    await cluster.add_control_node("ctl-d", "127.0.0.31", ports[0])
    await cluster.add_control_node("ctl-e", "127.0.0.32", ports[1])
    other = await cluster.start_node("ctl-e", "127.0.0.32", bgp_port=ports[1])

    daemon = Daemon("vrstack.control.main", config(cluster.url, ports[0]), tmp_path, "control")
    daemon.start()
    try:
        async with aiohttp.ClientSession() as s:

            async def get(path: str) -> tuple[int, Any]:
                async with s.get(daemon.url + path) as resp:
                    return resp.status, await resp.json()

            async def healthy() -> Any:
                status, body = await get("/health")
                return body if status == 200 and body["bgp_established"] == 1 else None

            health = await wait_until(healthy, timeout=20)
            assert health["config_connected"] is True
            _, intro = await get("/introspect")
            assert intro["asn"] == ASN and intro["router_id"] == "127.0.0.31"
            assert intro["bgp_peers"][0]["name"] == "ctl-e"
            assert intro["instances"][inst]["configured"] is True

            agent = SimAgent("compute1", "127.0.0.1", intro["xmpp_port"])
            await agent.connect()
            await agent.subscribe(inst)
            await agent.publish(inst, {"198.18.10.3/32": Nexthop("198.18.2.11", 17, 0, ("VXLAN",))})
            # The other node learns it over BGP from the daemon.
            await wait_until(lambda: _has_route(other.routes(inst), inst), timeout=20)
            _, routes = await get(f"/introspect/routes?instance={inst}")
            assert routes[inst]["198.18.10.3/32"]["nexthops"][0]["label"] == 17
            _, intro = await get("/introspect")
            assert intro["agents"][0]["name"] == "compute1"
            assert intro["agents"][0]["subscriptions"] == [inst]

            assert daemon.terminate() == 0
            await asyncio.wait_for(
                agent.closed.wait(), 10
            )  # the daemon closed the agent's stream on its way out
            lines = list(daemon.logs())
            assert any(line.get("event") == "stopped" for line in lines)
            assert all(line.get("service") == "vrstack-control" for line in lines)
    finally:
        daemon.kill()


async def _has_route(routes: dict[str, Any], inst: str) -> bool:
    return "198.18.10.3/32" in routes.get(inst, {})


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"bgp": {"port": 179}}, "bgp.address"),
        ({"bgp": {"address": "not-an-ip"}}, "bgp.address"),
        ({"bgp": {"address": "127.0.0.31", "port": 70000}}, "bgp.port"),
        ({"api": {"url": "ftp://x", "token": "t"}}, "api.url"),
        ({"xmpp": {"tls": {"cert": "/nonexistent/cert.pem"}}}, "xmpp.tls.cert"),
    ],
)
def test_bad_config_names_file_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], change: dict[str, Any], field: str
) -> None:
    cfg = {**config("http://127.0.0.1:1", 1), **change}
    path = tmp_path / "control.yaml"
    path.write_text(json.dumps(cfg))
    assert main(["--config", str(path)]) == 2  # checked before anything starts
    assert f"vrstack-control: config error: {path}: {field}:" in capsys.readouterr().err
