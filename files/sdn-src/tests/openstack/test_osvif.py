"""The `vrouter` os-vif plugin, loaded by os-vif itself from its entry point, plugging a
real VIFGeneric into a fake of the agent's port API (a neighbour of the thing tested)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import os_vif
import pytest
from aiohttp import web
from os_vif import exception as osv_exception
from os_vif import objects as osv_objects
from oslo_config import cfg

from vrstack.config.testing import free_port
from vrstack.openstack import agentapi

PROJECT = "8d3b2a6c0f5e4c1b9a7d6e5f4c3b2a10"
NET = "3f1c9a52-8e2d-4b67-a1f0-5c4d3e2b1a90"


class FakeAgent:
    """The agent's port API (POST/DELETE/GET /ports) with its validation replaced by a
    switch: `reject` makes every POST answer 400 with that message."""

    def __init__(self) -> None:
        self.ports: dict[str, dict[str, Any]] = {}
        self.reject = ""
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _app(self) -> web.Application:
        async def add(r: web.Request) -> web.Response:
            body = await r.json()
            if self.reject:
                return web.json_response({"error": self.reject}, status=400)
            self.ports[body["id"]] = body
            return web.json_response(body, status=201)

        async def delete(r: web.Request) -> web.Response:
            if self.ports.pop(r.match_info["id"], None) is None:
                return web.json_response({"error": "id: no such port"}, status=404)
            return web.json_response({"deleted": r.match_info["id"]})

        app = web.Application()
        app.router.add_post("/ports", add)
        app.router.add_delete("/ports/{id}", delete)
        return app

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        runner = web.AppRunner(self._app())
        self._loop.run_until_complete(runner.setup())
        self._loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        self._runner = runner
        self._ready.set()
        self._loop.run_forever()
        self._loop.run_until_complete(runner.cleanup())
        self._loop.close()

    def start(self) -> None:
        self._thread.start()
        assert self._ready.wait(10), "fake agent did not start"

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


@pytest.fixture
def agent() -> Iterator[FakeAgent]:
    a = FakeAgent()
    a.start()
    yield a
    a.stop()


@pytest.fixture
def plugin_conf(agent: FakeAgent, tmp_path: Path) -> Iterator[Path]:
    os_vif.initialize()
    port_dir = tmp_path / "vif-ports"
    cfg.CONF.set_override("agent_url", agent.url, "os_vif_vrouter")
    cfg.CONF.set_override("port_dir", str(port_dir), "os_vif_vrouter")
    cfg.CONF.set_override("timeout", 2.0, "os_vif_vrouter")
    yield port_dir
    cfg.CONF.clear_override("agent_url", "os_vif_vrouter")
    cfg.CONF.clear_override("port_dir", "os_vif_vrouter")
    cfg.CONF.clear_override("timeout", "os_vif_vrouter")


def make_vif(port_id: str | None = None, ip: str = "198.18.64.5") -> Any:
    """What Nova's os_vif_util builds for a port bound with vif_type='vrouter'."""
    port_id = port_id or str(uuid.uuid4())
    ips = osv_objects.fixed_ip.FixedIPList(objects=[osv_objects.fixed_ip.FixedIP(address=ip)])
    subnet = osv_objects.subnet.Subnet(cidr="198.18.64.0/24", ips=ips)
    network = osv_objects.network.Network(
        id=NET, label="blue", subnets=osv_objects.subnet.SubnetList(objects=[subnet])
    )
    return osv_objects.vif.VIFGeneric(
        id=port_id,
        address="FA:16:3E:00:00:01",
        network=network,
        plugin="vrouter",
        vif_name=("tap" + port_id)[:14],
    )


def instance() -> Any:
    return osv_objects.instance_info.InstanceInfo(
        uuid=str(uuid.uuid4()), name="vm1", project_id=PROJECT
    )


def test_plugin_is_found_by_entry_point_and_describes_vifgeneric(plugin_conf: Path) -> None:
    info = os_vif.host_info().get_plugin("vrouter")
    assert [v.vif_object_name for v in info.vif_info] == ["VIFGeneric"]


def test_plug_and_unplug_reach_the_agent_and_keep_a_record(
    agent: FakeAgent, plugin_conf: Path
) -> None:
    vif = make_vif()
    os_vif.plug(vif, instance())
    sent = agent.ports[vif.id]
    # No routing instance: the agent finds the network's in the config it is pushed.
    assert sent == {
        "id": vif.id,
        "network": NET,
        "mac": "fa:16:3e:00:00:01",
        "ips": ["198.18.64.5"],
        "tap": vif.vif_name,
    }
    assert json.loads((plugin_conf / f"{vif.id}.json").read_text()) == sent
    os_vif.unplug(vif, instance())
    assert vif.id not in agent.ports
    assert not (plugin_conf / f"{vif.id}.json").exists()
    os_vif.unplug(vif, instance())  # again: already gone is fine


def test_agent_refusal_is_an_os_vif_error_with_the_agent_message(
    agent: FakeAgent, plugin_conf: Path
) -> None:
    agent.reject = "id: no room for port x: 253 ports at most here"
    vif = make_vif()
    with pytest.raises(osv_exception.PlugException, match="no room for port x: 253"):
        os_vif.plug(vif, instance())
    assert not list(plugin_conf.glob("*.json")), "a refused port must not be replayed"


def test_unreachable_agent_keeps_the_port_for_replay(agent: FakeAgent, plugin_conf: Path) -> None:
    cfg.CONF.set_override("agent_url", f"http://127.0.0.1:{free_port()}", "os_vif_vrouter")
    vif = make_vif()
    os_vif.plug(vif, instance())  # Nova then waits for network-vif-plugged
    assert (plugin_conf / f"{vif.id}.json").exists()
    assert agent.ports == {}
    assert agentapi.replay(agent.url, str(plugin_conf)) == []
    assert agent.ports[vif.id]["tap"] == vif.vif_name
    # Unplug with the agent still unreachable is an error, and the record is gone anyway.
    with pytest.raises(osv_exception.UnplugException, match="unreachable"):
        os_vif.unplug(vif, instance())
    assert not (plugin_conf / f"{vif.id}.json").exists()


def test_replay_reports_what_the_agent_refused(agent: FakeAgent, tmp_path: Path) -> None:
    agentapi.PortRecords(str(tmp_path)).put({"id": "p1", "tap": "tapx"})
    agent.reject = "mac: not a MAC address"
    assert agentapi.replay(agent.url, str(tmp_path)) == ["port p1: mac: not a MAC address"]
    assert agentapi.main(["--agent", agent.url, "--port-dir", str(tmp_path)]) == 1
