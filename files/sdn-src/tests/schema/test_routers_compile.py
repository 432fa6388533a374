"""Logical routers compiled into route leaking and ACL entries: the compiler as tables,
then the transformer against a real API adding and removing an interface."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from test_compiler import GC, net, rule
from test_transformer import api_revision, derived, settled, transformer

from vrstack.agent.flows import DROP, FORWARD, decide
from vrstack.config.client import ConfigClient
from vrstack.config.store_sqlite import SQLiteStore
from vrstack.config.testing import ADMIN_TOKEN, running_api
from vrstack.schema.compiler import compile_config

JSON = dict[str, Any]


def router(uid: str, nets: list[str], gateway: str | None = None, **itf: Any) -> JSON:
    body: JSON = {"uuid": uid, "interfaces": [{"virtual_network": n, **itf} for n in nets]}
    if gateway:
        body["external_gateway"] = gateway
    return body


def imports(out: Any, uid: str) -> set[str]:
    return {t.rsplit(":", 1)[1] for t in out[uid].routing_instance["import_targets"]}


def test_a_router_leaks_routes_among_its_networks_only() -> None:
    nets = {u: net(u, f"198.18.{i}.0/24") for i, u in enumerate("abc")}
    out = compile_config(GC, nets, {}, {}, {"r": router("r", ["a", "b"])})
    assert imports(out, "a") == imports(out, "b") == {"8000000", "8000001"}
    assert imports(out, "c") == {"8000002"}  # not on the router
    assert out["a"].routing_instance["export_targets"] == ["target:64512:8000000"]


def test_router_entries_let_its_networks_talk_and_nothing_else() -> None:
    nets = {u: net(u, f"198.18.{i}.0/24") for i, u in enumerate("abc")}
    out = compile_config(GC, nets, {}, {}, {"r": router("r", ["a", "b"])})
    entries = out["a"].acl["entries"]
    assert [(e["policy"], e["rule"], e["source"], e["destination"]) for e in entries] == [
        ("r", 1, ["198.18.0.0/24"], ["198.18.1.0/24"]),
        ("r", 1, ["198.18.1.0/24"], ["198.18.0.0/24"]),
    ]
    subnets = ["198.18.0.0/24"]
    table = [
        ("198.18.0.5", "198.18.1.5", FORWARD),
        ("198.18.1.5", "198.18.0.5", FORWARD),
        ("198.18.0.5", "198.18.2.5", DROP),  # c is not on the router
    ]
    for sip, dip, action in table:
        assert decide(entries, subnets, sip, dip, 6, 1000, 80)[0] == action, (sip, dip)
    assert out["c"].acl["entries"] == []


def test_a_policy_deny_comes_before_the_router() -> None:
    nets = {u: net(u, f"198.18.{i}.0/24", ["p"]) for i, u in enumerate("ab")}
    policies = {"p": {"uuid": "p", "rules": [rule("deny", "a", "b", protocol="tcp")]}}
    out = compile_config(GC, nets, policies, {}, {"r": router("r", ["a", "b"])})
    entries = out["a"].acl["entries"]
    assert entries[0]["action"] == "deny"
    assert decide(entries, ["198.18.0.0/24"], "198.18.0.5", "198.18.1.5", 6, 1, 80)[0] == DROP
    assert decide(entries, ["198.18.0.0/24"], "198.18.0.5", "198.18.1.5", 1, 0, 0)[0] == FORWARD


def test_an_interface_on_one_subnet_limits_the_entries_to_it() -> None:
    nets = {"a": net("a", "198.18.0.0/24"), "b": net("b", "198.18.1.0/24")}
    nets["a"]["subnets"].append({"cidr": "198.18.9.0/24"})
    r = {"uuid": "r", "interfaces": [{"virtual_network": "a", "subnet_cidr": "198.18.9.0/24"}]}
    r["interfaces"].append({"virtual_network": "b"})
    entries = compile_config(GC, nets, {}, {}, {"r": r})["b"].acl["entries"]
    assert [(e["source"], e["destination"]) for e in entries] == [
        (["198.18.1.0/24"], ["198.18.9.0/24"]),
        (["198.18.9.0/24"], ["198.18.1.0/24"]),
    ]


def test_the_external_gateway_is_learnt_one_way_and_opens_nothing() -> None:
    nets = {u: net(u, f"198.18.{i}.0/24") for i, u in enumerate("ab")}
    nets["x"] = net("x", "198.18.30.0/24", external=True)
    out = compile_config(GC, nets, {}, {}, {"r": router("r", ["a", "b"], gateway="x")})
    assert imports(out, "a") == {"8000000", "8000001", "8000002"}
    assert imports(out, "x") == {"8000002"}  # only floating addresses get in
    entries = out["a"].acl["entries"]
    assert all(e["destination_network"] != "x" for e in entries)
    assert decide(entries, ["198.18.0.0/24"], "198.18.0.5", "198.18.30.9", 6, 1, 80)[0] == DROP


def test_a_router_naming_unknown_networks_changes_nothing() -> None:
    nets = {"a": net("a", "198.18.0.0/24")}
    out = compile_config(GC, nets, {}, {}, {"r": router("r", ["a", "gone"], gateway="gone")})
    assert imports(out, "a") == {"8000000"} and out["a"].acl["entries"] == []


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, ConfigClient]]:
    async with (
        running_api(SQLiteStore(str(tmp_path / "c.db"))) as url,
        ConfigClient(url, ADMIN_TOKEN) as c,
    ):
        yield url, c


@pytest.mark.asyncio
async def test_transformer_follows_router_interfaces(api: tuple[str, ConfigClient]) -> None:
    url, c = api
    await c.create("global-config", {"name": "default", "asn": 64512})
    project = await c.create("project", {"name": "demo"})
    nets = []
    for i, name in enumerate("ab"):
        body = {"name": name, "parent_uuid": project["uuid"]}
        body["subnets"] = [{"cidr": f"198.18.{40 + i}.0/24"}]
        nets.append(await c.create("virtual-network", body))
    a, b = nets
    async with transformer(url) as t:
        await settled(t, c)
        ri_a, _ = await derived(c, a)
        ri_b, _ = await derived(c, b)
        assert ri_a["import_targets"] == [ri_a["route_target"]]
        r = await c.create(
            "logical-router",
            {
                "name": "r1",
                "parent_uuid": project["uuid"],
                "interfaces": [{"virtual_network": a["uuid"]}, {"virtual_network": b["uuid"]}],
            },
        )
        await settled(t, c)
        ri_a, acl_a = await derived(c, a)
        assert ri_a["import_targets"] == sorted([ri_a["route_target"], ri_b["route_target"]])
        assert [(e["source"], e["destination"]) for e in acl_a["entries"]] == [
            (["198.18.40.0/24"], ["198.18.41.0/24"]),
            (["198.18.41.0/24"], ["198.18.40.0/24"]),
        ]
        rev = await settled(t, c)
        assert await t.reconcile() == 0 and await api_revision(c) == rev
        # Removing b's interface removes the connectivity.
        await c.update("logical-router", r["uuid"], {"interfaces": r["interfaces"][:1]})
        await settled(t, c)
        ri_a, acl_a = await derived(c, a)
        ri_b, acl_b = await derived(c, b)
        assert ri_a["import_targets"] == [ri_a["route_target"]]
        assert ri_b["import_targets"] == [ri_b["route_target"]]
        assert acl_a["entries"] == acl_b["entries"] == []
