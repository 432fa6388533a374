"""The `vrouter` os-vif plugin against a real `vrstack-agent` process (over a userspace
vrouterd datapath, no control node): plug, the agent's own refusal, unplug, and the
plugin's records replayed to an agent that lost its port file."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import os_vif
import pytest
from os_vif import exception as osv_exception
from oslo_config import cfg
from test_osvif import NET, instance, make_vif

from vrstack.config.testing import Daemon, free_port
from vrstack.openstack import agentapi

VROUTER_SRC = Path(__file__).resolve().parents[3] / "vrouter-src"


@pytest.fixture
def vrouterd(tmp_path: Path) -> Iterator[Path]:
    subprocess.run(["make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd"], check=True)
    sock = tmp_path / "control.sock"
    args = ["--control", str(sock), "--pkt0-dir", str(tmp_path)]
    with (tmp_path / "vrouterd.log").open("w") as log:
        proc = subprocess.Popen([str(VROUTER_SRC / "build" / "vrouterd"), *args], stderr=log)
    try:
        for _ in range(250):
            if sock.exists():
                break
            time.sleep(0.02)
        else:
            raise AssertionError("vrouterd did not start")
        yield sock
    finally:
        proc.terminate()
        proc.wait(5)


@pytest.fixture
def agent(vrouterd: Path, tmp_path: Path) -> Iterator[Daemon]:
    config = {
        "name": "compute1",
        "controls": [f"127.0.0.1:{free_port()}"],  # none there: the port API works alone
        "fabric": {"address": "198.18.2.11"},
        "datapath": {"socket": str(vrouterd)},
        "ports_file": str(tmp_path / "agent-ports.json"),
        "listen": {"host": "127.0.0.1", "port": free_port()},
    }
    d = Daemon("vrstack.agent.main", config, tmp_path, "agent")
    d.start()
    try:
        yield d
    finally:
        d.kill()


def agent_ports(agent: Daemon) -> dict[str, Any]:
    with urllib.request.urlopen(agent.url + "/ports", timeout=5) as resp:
        return {p["id"]: p for p in json.loads(resp.read())}


def test_plug_unplug_and_refusal_with_a_real_agent(agent: Daemon, tmp_path: Path) -> None:
    os_vif.initialize()
    port_dir = tmp_path / "vif-ports"
    cfg.CONF.set_override("agent_url", agent.url, "os_vif_vrouter")
    cfg.CONF.set_override("port_dir", str(port_dir), "os_vif_vrouter")
    try:
        vif = make_vif(ip="198.18.64.7")
        os_vif.plug(vif, instance())
        got = agent_ports(agent)[vif.id]
        assert got["network"] == NET and got["tap"] == vif.vif_name
        assert got["ips"] == ["198.18.64.7"] and got["instance"].endswith(f":{NET}:{NET}")
        # The same port into another network: the agent refuses, and says why.
        moved = make_vif(port_id=vif.id)
        moved.network.id = str(uuid.uuid4())
        with pytest.raises(osv_exception.PlugException, match="delete it first"):
            os_vif.plug(moved, instance())
        # The agent loses its port file (a reinstall): the plugin's records bring it back.
        agent.terminate()
        Path(tmp_path / "agent-ports.json").unlink()
        agent.start()
        assert agent_ports(agent) == {}
        assert agentapi.replay(agent.url, str(port_dir)) == []
        assert agent_ports(agent)[vif.id]["tap"] == vif.vif_name
        os_vif.unplug(vif, instance())
        assert agent_ports(agent) == {}
        assert list(port_dir.glob("*.json")) == []
    finally:
        cfg.CONF.clear_override("agent_url", "os_vif_vrouter")
        cfg.CONF.clear_override("port_dir", "os_vif_vrouter")
