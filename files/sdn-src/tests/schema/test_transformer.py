"""The schema transformer against a real API: convergence, idempotent replay, restarts,
and resuming the watch after the API was away."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from vrstack.config.client import ConfigClient
from vrstack.config.model import RESOURCES
from vrstack.config.objects import ConfigDB
from vrstack.config.store import Store
from vrstack.config.store_etcd import EtcdStore
from vrstack.config.store_sqlite import SQLiteStore
from vrstack.config.testing import ADMIN_TOKEN, Etcd, free_port, running_api, wait_until
from vrstack.schema.transformer import SchemaTransformer

pytestmark = pytest.mark.asyncio
JSON = dict[str, Any]


@contextlib.asynccontextmanager
async def transformer(url: str) -> AsyncIterator[SchemaTransformer]:
    t = SchemaTransformer(ConfigClient(url, ADMIN_TOKEN))
    stop = asyncio.Event()
    task = asyncio.ensure_future(t.run(stop))
    try:
        yield t
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        await t.client.close()


async def api_revision(c: ConfigClient) -> int:
    return int((await c.request("GET", "/health"))["revision"])


async def settled(t: SchemaTransformer, c: ConfigClient) -> int:
    """Wait until the transformer has seen the latest revision and written nothing since."""

    async def check() -> int | None:
        rev = await api_revision(c)
        await asyncio.sleep(0.3)
        same = rev == await api_revision(c) and t.mirror.revision == rev
        return rev if same and t.last_error is None else None

    return int(await wait_until(check, timeout=15, interval=0.05))


async def derived(c: ConfigClient, net: JSON) -> tuple[JSON, JSON]:
    ris, _ = await c.list_all("routing-instance", parent_uuid=net["uuid"])
    acls, _ = await c.list_all("access-control-list", parent_uuid=net["uuid"])
    assert len(ris) == 1 and len(acls) == 1
    return ris[0], acls[0]


@pytest_asyncio.fixture(params=["sqlite", "etcd"])
async def api(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[tuple[str, ConfigClient]]:
    store: Store = SQLiteStore(str(tmp_path / "c.db"))
    if request.param == "etcd":
        etcd: Etcd = request.getfixturevalue("etcd")
        store = EtcdStore([etcd.url], prefix=f"/{tmp_path.name}/")
    async with (
        running_api(store, request.param) as url,
        ConfigClient(url, ADMIN_TOKEN) as c,
    ):
        yield url, c


async def setup_two_networks(c: ConfigClient) -> tuple[JSON, JSON, JSON, JSON]:
    await c.create(
        "global-config", {"name": "default", "asn": 64512, "route_target_range": [8000000, 8000099]}
    )
    project = await c.create("project", {"name": "demo"})
    a = await c.create(
        "virtual-network",
        {"name": "a", "parent_uuid": project["uuid"], "subnets": [{"cidr": "198.18.10.0/24"}]},
    )
    b = await c.create(
        "virtual-network",
        {"name": "b", "parent_uuid": project["uuid"], "subnets": [{"cidr": "198.18.11.0/24"}]},
    )
    policy = await c.create(
        "network-policy",
        {
            "name": "a-b",
            "parent_uuid": project["uuid"],
            "rules": [
                {
                    "action": "pass",
                    "protocol": "tcp",
                    "source": {"network": a["uuid"]},
                    "destination": {"network": b["uuid"]},
                    "destination_ports": [22, 22],
                }
            ],
        },
    )
    for n in (a, b):
        await c.update(
            "virtual-network",
            n["uuid"],
            {
                **{k: n[k] for k in RESOURCES["virtual-network"].fields if k in n},
                "network_policies": [policy["uuid"]],
            },
        )
    return project, a, b, policy


async def test_policy_connects_networks_and_replay_changes_nothing(
    api: tuple[str, ConfigClient],
) -> None:
    url, c = api
    _, a, b, _ = await setup_two_networks(c)
    async with transformer(url) as t:
        rev = await settled(t, c)
        ri_a, acl_a = await derived(c, a)
        ri_b, _ = await derived(c, b)
        assert ri_a["fq_name"] == ["demo", "a", "a"]
        assert ri_a["route_target"] != ri_b["route_target"]
        assert ri_a["import_targets"] == sorted([ri_a["route_target"], ri_b["route_target"]])
        assert ri_b["import_targets"] == sorted([ri_a["route_target"], ri_b["route_target"]])
        assert [
            (e["source"], e["destination"], e["destination_ports"]) for e in acl_a["entries"]
        ] == [
            (["198.18.10.0/24"], ["198.18.11.0/24"], [22, 22]),
            (["198.18.11.0/24"], ["198.18.10.0/24"], [0, 65535]),
        ]
        assert {ri_a["vni"], ri_b["vni"]} == {1, 2}
        # Replaying the whole config: resync and reconcile write nothing.
        await t.mirror.resync()
        assert await t.reconcile() == 0
        assert await api_revision(c) == rev

    # A fresh transformer (a restart) also writes nothing and keeps every allocation.
    async with transformer(url) as t2:
        await wait_until(lambda: _true(t2.reconciles >= 1), timeout=10)
        assert await settled(t2, c) == rev
        assert t2.writes == 0
        assert (await derived(c, a))[0] == ri_a


async def _true(value: bool) -> bool:
    return value


async def test_changes_follow_and_allocations_are_stable(api: tuple[str, ConfigClient]) -> None:
    url, c = api
    project, a, b, policy = await setup_two_networks(c)
    async with transformer(url) as t:
        await settled(t, c)
        ri_a, _ = await derived(c, a)
        ri_b, _ = await derived(c, b)
        # Detach the policy from b: routes no longer leak either way.
        await c.update(
            "virtual-network", b["uuid"], {"subnets": b["subnets"], "network_policies": []}
        )
        await settled(t, c)
        assert (await derived(c, a))[0]["import_targets"] == [ri_a["route_target"]]
        assert (await derived(c, b))[0]["import_targets"] == [ri_b["route_target"]]
        assert (await derived(c, b))[1]["entries"] == []
        # Deleting a network removes its derived objects; b keeps its target.
        await c.update("virtual-network", a["uuid"], {"subnets": a["subnets"]})
        await c.delete("network-policy", policy["uuid"])
        await c.delete("virtual-network", a["uuid"])
        await settled(t, c)
        assert (await c.list_all("routing-instance", parent_uuid=a["uuid"]))[0] == []
        assert (await derived(c, b))[0]["route_target"] == ri_b["route_target"]
        # The freed target goes to the next new network.
        d = await c.create("virtual-network", {"name": "d", "parent_uuid": project["uuid"]})
        await settled(t, c)
        assert (await derived(c, d))[0]["route_target"] == ri_a["route_target"]


async def test_resumes_watch_after_the_api_was_away(tmp_path: Path) -> None:
    db_path = str(tmp_path / "c.db")
    port = free_port()
    async with running_api(SQLiteStore(db_path), port=port) as url:
        async with ConfigClient(url, ADMIN_TOKEN) as c:
            project = (await setup_two_networks(c))[0]
        t_cm = transformer(url)
        t = await t_cm.__aenter__()
        async with ConfigClient(url, ADMIN_TOKEN) as c:
            await settled(t, c)
        seen = t.mirror.revision
        resyncs = t.mirror.resyncs
    try:
        # The API is down: the transformer retries. A change is made meanwhile.
        await wait_until(lambda: _true(not t.mirror.connected), timeout=40)
        store = SQLiteStore(db_path)
        await store.start()
        created = await ConfigDB(store).create(
            RESOURCES["virtual-network"], {"name": "while-away", "parent_uuid": project["uuid"]}
        )
        await store.close()
        async with (
            running_api(SQLiteStore(db_path), port=port) as url2,
            ConfigClient(url2, ADMIN_TOKEN) as c,
        ):
            await settled(t, c)
            assert t.mirror.revision > seen
            assert t.mirror.resyncs == resyncs  # resumed from its revision, no relisting
            ri, _ = await derived(c, created)
            assert ri["route_target"].startswith("target:64512:")
    finally:
        await t_cm.__aexit__(None, None, None)
