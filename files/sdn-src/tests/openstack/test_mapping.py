"""Neutron dicts -> config API bodies, and what precommit refuses (a table each)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from vrstack.openstack import mapping

NET = "3f1c9a52-8e2d-4b67-a1f0-5c4d3e2b1a90"
SUBNET: dict[str, Any] = {
    "id": "s1",
    "network_id": NET,
    "cidr": "198.18.64.0/24",
    "gateway_ip": "198.18.64.1",
    "allocation_pools": [{"start": "198.18.64.10", "end": "198.18.64.99"}],
    "enable_dhcp": True,
    "dns_nameservers": ["198.18.64.2"],
    "host_routes": [{"destination": "198.18.80.0/24", "nexthop": "198.18.64.3"}],
}


@pytest.mark.parametrize(
    ("project_id", "uuid"),
    [
        ("8d3b2a6c0f5e4c1b9a7d6e5f4c3b2a10", "8d3b2a6c-0f5e-4c1b-9a7d-6e5f4c3b2a10"),
        ("8d3b2a6c-0f5e-4c1b-9a7d-6e5f4c3b2a10", "8d3b2a6c-0f5e-4c1b-9a7d-6e5f4c3b2a10"),
        ("demo", mapping.project_uuid("demo")),  # not a uuid: derived, stable
    ],
)
def test_project_uuid(project_id: str, uuid: str) -> None:
    assert mapping.project_uuid(project_id) == uuid
    assert mapping.project_body(project_id)["name"] == uuid


def test_network_body_holds_only_its_own_subnets() -> None:
    other = {**SUBNET, "id": "s2", "network_id": "elsewhere", "cidr": "198.18.65.0/24"}
    body = mapping.network_body(
        {"id": NET, "project_id": "demo", "router:external": True}, [SUBNET, other]
    )
    assert body["uuid"] == body["name"] == NET
    assert body["external"] is True
    assert body["subnets"] == [
        {
            "cidr": "198.18.64.0/24",
            "gateway": "198.18.64.1",
            "allocation_pools": [{"start": "198.18.64.10", "end": "198.18.64.99"}],
            "dhcp": {
                "enabled": True,
                "dns_servers": ["198.18.64.2"],
                "host_routes": [{"prefix": "198.18.80.0/24", "nexthop": "198.18.64.3"}],
            },
        }
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"cidr": "198.18.64.0/31"}, "at least 4 addresses"),
        ({"gateway_ip": None}, "need a gateway"),
        ({"dns_nameservers": [f"198.18.64.{i}" for i in range(9)]}, "at most 8"),
    ],
)
def test_check_subnet_refuses_what_the_model_cannot_hold(
    change: dict[str, Any], message: str
) -> None:
    with pytest.raises(mapping.Unsupported, match=message):
        mapping.check_subnet({**SUBNET, **change})


def test_port_body_records_neutron_addresses_and_binding() -> None:
    port = {
        "id": "p1",
        "project_id": "demo",
        "network_id": NET,
        "mac_address": "fa:16:3e:00:00:01",
        "fixed_ips": [],
        "device_owner": "compute:nova",
        "device_id": "vm1",
    }
    body = mapping.port_body(port, None)
    assert body["fixed_ips"] == [], "no address must not become 'allocate one'"
    assert "virtual_router" not in body
    assert mapping.port_body(port, "vr-1")["virtual_router"] == "vr-1"
    assert mapping.is_service_port({**port, "device_owner": "network:router_interface"})
    assert not mapping.is_service_port(port)


def test_differs_ignores_server_fields_and_sees_a_lost_binding() -> None:
    want = mapping.port_body(
        {"id": "p1", "project_id": "demo", "network_id": NET, "mac_address": "fa:16:3e:00:00:01"},
        None,
    )
    have = {**want, "version": 7, "fq_name": ["x", "p1"], "created_at": "t"}
    assert not mapping.differs(want, have)
    assert mapping.differs(want, {**have, "virtual_router": "vr-1"})
    assert mapping.differs({**want, "device_id": "vm2"}, have)


def test_openstack_package_does_not_need_aiohttp() -> None:
    """Neutron's and Nova's venv has no aiohttp: importing our modules must not load it."""
    code = (
        "import sys, vrstack.openstack.ml2, vrstack.openstack.osvif, vrstack.openstack.agentapi;"
        "sys.exit('aiohttp' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0
