"""Logical routers in the config API over HTTP (every storage backend): what a router
may join is checked against the networks with a 4xx naming the field and nothing
written; its networks cannot be deleted under it; the OpenAPI document describes it."""

from __future__ import annotations

from typing import Any

import pytest

from vrstack.config.client import ApiError, ConfigClient

pytestmark = pytest.mark.asyncio
JSON = dict[str, Any]


async def revision(c: ConfigClient) -> int:
    return int((await c.request("GET", "/projects", params={"limit": 1}))["revision"])


async def networks(c: ConfigClient) -> tuple[JSON, JSON, JSON, JSON, JSON]:
    project = await c.create("project", {"name": "demo"})

    async def vn(name: str, cidrs: list[str], external: bool = False) -> JSON:
        body = {"name": name, "parent_uuid": project["uuid"], "external": external}
        body["subnets"] = [{"cidr": x} for x in cidrs]
        return await c.create("virtual-network", body)

    a = await vn("a", ["198.18.20.0/24", "198.18.21.0/24"])
    b = await vn("b", ["198.18.22.0/24"])
    clash = await vn("clash", ["198.18.20.128/25"])
    ext = await vn("ext", ["198.18.30.0/24"], external=True)
    return project, a, b, clash, ext


async def refused(c: ConfigClient, body: JSON, status: int, field: str) -> str:
    before = await revision(c)
    with pytest.raises(ApiError) as info:
        await c.create("logical-router", body)
    assert (info.value.status, info.value.body.get("field")) == (status, field), info.value.body
    assert await revision(c) == before, "a refused request writes nothing"
    return str(info.value.body["error"])


async def test_a_router_joins_networks_and_guards_them(admin: ConfigClient) -> None:
    project, a, b, _, ext = await networks(admin)
    router = await admin.create(
        "logical-router",
        {
            "name": "r1",
            "parent_uuid": project["uuid"],
            "interfaces": [
                {"virtual_network": a["uuid"], "subnet_cidr": "198.18.21.0/24", "port": "p1"},
                {"virtual_network": b["uuid"]},
            ],
            "external_gateway": ext["uuid"],
        },
    )
    assert router["fq_name"] == ["demo", "r1"]
    assert [i["virtual_network"] for i in router["interfaces"]] == [a["uuid"], b["uuid"]]
    # Its networks are referenced: not deletable while the router names them.
    for net in (a, ext):
        with pytest.raises(ApiError) as info:
            await admin.delete("virtual-network", net["uuid"])
        assert info.value.status == 409 and router["uuid"] in info.value.body["error"]
    # Removing an interface frees its network.
    fields = {"interfaces": router["interfaces"][:1], "external_gateway": ext["uuid"]}
    await admin.update("logical-router", router["uuid"], fields)
    await admin.delete("virtual-network", b["uuid"])
    await admin.delete("logical-router", router["uuid"])
    await admin.delete("virtual-network", a["uuid"])


async def test_bad_routers_are_refused_naming_the_field(admin: ConfigClient) -> None:
    project, a, b, clash, ext = await networks(admin)
    p = project["uuid"]

    def body(interfaces: list[JSON], **kw: Any) -> JSON:
        return {"name": "r", "parent_uuid": p, "interfaces": interfaces, **kw}

    says = await refused(
        admin,
        body([{"virtual_network": a["uuid"]}], external_gateway=b["uuid"]),
        409,
        "external_gateway",
    )
    assert "external" in says
    says = await refused(
        admin, body([{"virtual_network": ext["uuid"]}]), 409, "interfaces[0].virtual_network"
    )
    assert "external_gateway" in says
    says = await refused(
        admin,
        body([{"virtual_network": b["uuid"], "subnet_cidr": "198.18.20.0/24"}]),
        409,
        "interfaces[0].subnet_cidr",
    )
    assert b["uuid"] in says
    says = await refused(
        admin,
        body([{"virtual_network": a["uuid"]}, {"virtual_network": clash["uuid"]}]),
        409,
        "interfaces[1].virtual_network",
    )
    assert "overlaps" in says
    # Only the other subnet of a: no overlap, accepted below.
    await refused(
        admin,
        body([{"virtual_network": a["uuid"]}, {"virtual_network": a["uuid"]}]),
        400,
        "interfaces[1]",
    )
    missing = "6f1ed3a6-4b0e-4a55-9a2e-7c1d1d0b7a11"
    await refused(admin, body([{"virtual_network": missing}]), 409, "interfaces[0].virtual_network")
    await refused(admin, body([{"network": a["uuid"]}]), 400, "interfaces[0].network")
    await refused(
        admin,
        body([{"virtual_network": a["uuid"], "subnet_cidr": "x"}]),
        400,
        "interfaces[0].subnet_cidr",
    )
    ok = await admin.create(
        "logical-router",
        body(
            [
                {"virtual_network": a["uuid"], "subnet_cidr": "198.18.21.0/24"},
                {"virtual_network": clash["uuid"]},
            ]
        ),
    )
    assert len(ok["interfaces"]) == 2


async def test_openapi_describes_the_router(admin: ConfigClient) -> None:
    doc = await admin.request("GET", "/openapi.json")
    assert "/logical-routers" in doc["paths"] and "/logical-routers/{uuid}" in doc["paths"]
    schema = doc["components"]["schemas"]["LogicalRouter"]
    text = str(schema)
    assert "interfaces" in text and "external_gateway" in text
