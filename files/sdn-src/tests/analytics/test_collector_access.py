"""The project view's lookup (`analytics.access.ProjectVrfs`) against a real config API on
loopback: exact routing-instance names, its cache's lifetime and bound, its errors; and
the query restricted to a set of routing instances on a real store."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from collectorkit import flow

from vrstack.analytics import query
from vrstack.analytics.access import ProjectVrfs
from vrstack.analytics.records import check_record
from vrstack.analytics.store_sqlite import SQLiteStore
from vrstack.config.auth import Identity
from vrstack.config.client import ConfigClient
from vrstack.config.fields import FieldError
from vrstack.config.store_sqlite import SQLiteStore as ConfigStore
from vrstack.config.testing import ADMIN_TOKEN, running_api


@dataclass
class Clock:
    now: float = 1000.0

    def __call__(self) -> float:
        return self.now


def reader(project_id: str) -> Identity:
    return Identity("rita", frozenset({"reader"}), project_id)


@pytest_asyncio.fixture
async def config_url(tmp_path: Path) -> AsyncIterator[str]:
    """A config API with projects "a" (Keystone k-a) and "a:n" (k-b), each with network
    n and its routing instance: "a:n:n" and "a:n:n:n", one a prefix of the other."""
    async with running_api(ConfigStore(str(tmp_path / "config.db"))) as url:
        async with ConfigClient(url, ADMIN_TOKEN) as c:
            for i, (name, ks) in enumerate((("a", "k-a"), ("a:n", "k-b")), 1):
                p = await c.create("project", {"name": name, "keystone_id": ks})
                net = await c.create("virtual-network", {"name": "n", "parent_uuid": p["uuid"]})
                ri = {"route_target": f"target:64512:{8000000 + i}", "vni": i}
                await c.create(
                    "routing-instance",
                    {"name": "n", "parent_uuid": net["uuid"], "forwarding_mode": "l3", **ri},
                )
        yield url


@pytest.mark.asyncio
async def test_lookup_is_exact_cached_and_bounded(config_url: str) -> None:
    clock = Clock()
    # The admin's token: the config API shows every routing instance; kept by name here.
    views = ProjectVrfs(ConfigClient(config_url, ""), ttl=30, size=1, clock=clock)
    try:
        assert await views.of(reader("k-a"), ADMIN_TOKEN) == {"a:n:n"}
        assert await views.of(reader("k-b"), ADMIN_TOKEN) == {"a:n:n:n"}
        assert await views.of(reader("k-none"), ADMIN_TOKEN) == frozenset()
        assert views.lookups == 3
        assert await views.of(reader("k-none"), ADMIN_TOKEN) == frozenset()
        assert views.lookups == 3  # cached
        await views.of(reader("k-a"), ADMIN_TOKEN)  # evicted by the bound of 1
        assert views.lookups == 4
        clock.now += 31
        await views.of(reader("k-a"), ADMIN_TOKEN)  # expired
        assert views.lookups == 5
    finally:
        await views.close()


@pytest.mark.asyncio
async def test_lookup_errors_name_the_reason(config_url: str) -> None:
    views = ProjectVrfs(ConfigClient(config_url, ""))
    try:
        with pytest.raises(web.HTTPForbidden, match="config API refused rita's token"):
            await views.of(reader("k-a"), "not-a-token")
    finally:
        await views.close()
    away = ProjectVrfs(ConfigClient("http://127.0.0.1:9", "", timeout=5))
    try:
        with pytest.raises(web.HTTPServiceUnavailable, match="cannot find project k-a"):
            await away.of(reader("k-a"), ADMIN_TOKEN)
    finally:
        await away.close()


@pytest.mark.asyncio
async def test_query_restricted_to_routing_instances(tmp_path: Path) -> None:
    store = SQLiteStore(str(tmp_path / "analytics.db"))
    await store.start()
    try:
        rows = [check_record(flow(i, vrf=v), "r")[1] for i, v in enumerate(("x:n:n", "y:n:n"))]
        await store.commit("cmp1", {"flows": rows})
        body = {"table": "flows", "select": ["vrf"]}
        for vrfs, seen in ((None, ["x:n:n", "y:n:n"]), ({"y:n:n"}, ["y:n:n"]), (set(), [])):
            page = await store.select(query.parse(dict(body), 2e9, vrfs))
            assert [r["vrf"] for r in page["items"]] == seen, vrfs
        with pytest.raises(FieldError, match="not a project's"):
            query.parse({"table": "logs"}, 2e9, {"x:n:n"})
    finally:
        await store.close()
