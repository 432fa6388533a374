"""A control node peers with the gateways that list it (`bgp.gateways`, from the fabric
model's gateway.peers) and with every other control node; without the setting, with every
gateway."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from controlkit import control_settings

from vrstack.control import main as control_main
from vrstack.control.node import ControlNode, NodeSettings
from vrstack.service.settings import ConfigError

JSON = dict[str, Any]


def router(name: str, address: str, role: str, asn: int = 64512) -> JSON:
    return {
        "name": name,
        "address": address,
        "port": 179,
        "asn": asn,
        "hold_time": 90,
        "role": role,
    }


ROUTERS = {
    r["name"]: r
    for r in (
        router("ctl1", "198.18.1.11", "control-node"),
        router("ctl2", "198.18.2.11", "control-node"),
        router("edge1", "198.18.254.1", "gateway", asn=64700),
        router("edge2", "198.18.254.2", "gateway", asn=64701),
    )
}


async def peers_of(gateways: frozenset[str] | None) -> list[str]:
    # ctl3 has no bgp-router of its own and there is no global-config: without an AS
    # number the node keeps its peer list and starts no speaker.
    settings = NodeSettings(name="ctl3", bgp_address="198.18.3.11", bgp_gateways=gateways)
    node = ControlNode(settings)
    await node._apply_bgp_routers({"bgp-router": ROUTERS, "global-config": {}})
    assert node.speaker is None
    return [p.name for p in node._peers]


@pytest.mark.asyncio
async def test_only_the_gateways_that_list_this_node() -> None:
    assert await peers_of(frozenset({"198.18.254.2"})) == ["ctl1", "ctl2", "edge2"]
    assert await peers_of(frozenset()) == ["ctl1", "ctl2"]
    assert await peers_of(None) == ["ctl1", "ctl2", "edge1", "edge2"]


def load(tmp_path: Path, bgp: JSON) -> NodeSettings:
    return control_main.load(control_settings(tmp_path, bgp))[0]


def test_config_file_setting(tmp_path: Path) -> None:
    assert load(tmp_path, {}).bgp_gateways is None
    assert load(tmp_path, {"gateways": []}).bgp_gateways == frozenset()
    got = load(tmp_path, {"gateways": ["198.18.254.1"]}).bgp_gateways
    assert got == frozenset({"198.18.254.1"})
    with pytest.raises(ConfigError, match=r"bgp\.gateways\[1\].*not an IPv4 address"):
        load(tmp_path, {"gateways": ["198.18.254.1", "edge2"]})
    with pytest.raises(ConfigError, match=r"bgp\.gateways.*must be a list"):
        load(tmp_path, {"gateways": "198.18.254.1"})
