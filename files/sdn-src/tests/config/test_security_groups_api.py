"""Security groups in the config API over HTTP (every storage backend): rules are
validated with errors naming the field and nothing written, ports reference groups, a
group in use cannot be deleted, and a rule may name its own group as the remote."""

from __future__ import annotations

from typing import Any

import pytest

from vrstack.config.client import ApiError, ConfigClient

pytestmark = pytest.mark.asyncio
JSON = dict[str, Any]


async def revision(c: ConfigClient) -> int:
    return int((await c.request("GET", "/projects", params={"limit": 1}))["revision"])


async def refused(c: ConfigClient, body: JSON, status: int, field: str) -> str:
    before = await revision(c)
    with pytest.raises(ApiError) as info:
        await c.create("security-group", body)
    assert (info.value.status, info.value.body.get("field")) == (status, field), info.value.body
    assert await revision(c) == before, "a refused request writes nothing"
    return str(info.value.body["error"])


@pytest.mark.parametrize(
    ("rule", "field", "says"),
    [
        ({"direction": "in"}, "rules[0].direction", "ingress, egress"),
        ({}, "rules[0].direction", "required"),
        ({"direction": "ingress", "protocol": "gre"}, "rules[0].protocol", "must match"),
        ({"direction": "ingress", "protocol": "256"}, "rules[0].protocol", "0 to 255"),
        (
            {"direction": "ingress", "protocol": "icmp", "port_range": [8, 8]},
            "rules[0].port_range",
            "tcp or udp",
        ),
        (
            {"direction": "ingress", "protocol": "tcp", "port_range": [90, 80]},
            "rules[0].port_range",
            "start must not be greater",
        ),
        (
            {"direction": "ingress", "protocol": "tcp", "port_range": [1, 70000]},
            "rules[0].port_range[1]",
            "between",
        ),
        (
            {"direction": "egress", "ethertype": "IPv6", "protocol": "icmp"},
            "rules[0].protocol",
            "does not go with IPv6",
        ),
        (
            {"direction": "egress", "ethertype": "IPv6", "remote_prefix": "198.18.0.0/15"},
            "rules[0].remote_prefix",
            "not an IPv6 prefix",
        ),
        (
            {"direction": "egress", "remote_prefix": "198.18.0.1/15"},
            "rules[0].remote_prefix",
            "host bits zero",
        ),
        (
            {
                "direction": "egress",
                "remote_prefix": "198.18.0.0/15",
                "remote_group": "6f1ed3a6-4b0e-4a55-9a2e-7c1d1d0b7a11",
            },
            "rules[0]",
            "not both",
        ),
        ({"direction": "egress", "remote_group": "web"}, "rules[0].remote_group", "must match"),
        ({"direction": "egress", "port": 80}, "rules[0].port", "not a known field"),
    ],
)
async def test_bad_rules_are_400_naming_the_field(
    admin: ConfigClient, rule: JSON, field: str, says: str
) -> None:
    project = await admin.create("project", {"name": "demo"})
    body = {"name": "g", "parent_uuid": project["uuid"], "rules": [rule]}
    assert says in await refused(admin, body, 400, field)


async def test_groups_rules_and_port_references(admin: ConfigClient) -> None:
    project = await admin.create("project", {"name": "demo"})
    net = await admin.create(
        "virtual-network",
        {"name": "blue", "parent_uuid": project["uuid"], "subnets": [{"cidr": "198.18.64.0/24"}]},
    )
    group = await admin.create(
        "security-group", {"name": "default", "parent_uuid": project["uuid"]}
    )
    # Neutron's default group: egress anywhere, ingress from its own members.
    rules = [
        {"direction": "egress", "ethertype": "IPv4"},
        {"direction": "ingress", "ethertype": "IPv4", "remote_group": group["uuid"]},
        {"direction": "ingress", "protocol": "6", "port_range": [22, 22]},
        {"direction": "ingress", "protocol": "47", "remote_prefix": "198.18.0.0/15"},
    ]
    group = await admin.update("security-group", group["uuid"], {"rules": rules})
    got = group["rules"]
    assert got[0] == {
        "direction": "egress",
        "ethertype": "IPv4",
        "protocol": "any",
        "port_range": [0, 65535],
    }
    assert got[1]["remote_group"] == group["uuid"]
    assert got[2]["protocol"] == "tcp", "a known protocol number is stored by name"
    assert got[3]["protocol"] == "47"

    missing = "6f1ed3a6-4b0e-4a55-9a2e-7c1d1d0b7a11"
    with pytest.raises(ApiError) as info:
        await admin.create(
            "virtual-machine-interface",
            {
                "name": "p0",
                "parent_uuid": project["uuid"],
                "virtual_network": net["uuid"],
                "security_groups": [missing],
            },
        )
    assert (info.value.status, info.value.body["field"]) == (409, "security_groups[0]")
    port = await admin.create(
        "virtual-machine-interface",
        {
            "name": "p1",
            "parent_uuid": project["uuid"],
            "virtual_network": net["uuid"],
            "security_groups": [group["uuid"]],
        },
    )
    assert port["security_groups"] == [group["uuid"]]
    with pytest.raises(ApiError) as info:
        await admin.delete("security-group", group["uuid"])
    assert info.value.status == 409, "a group a port names cannot go"
    await admin.update(
        "virtual-machine-interface",
        port["uuid"],
        {"virtual_network": net["uuid"], "fixed_ips": port["fixed_ips"], "security_groups": []},
    )
    # Its own rules name it (remote_group): that does not keep it alive.
    await admin.delete("security-group", group["uuid"])
    assert await admin.get("security-group", group["uuid"]) is None
