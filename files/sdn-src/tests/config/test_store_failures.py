"""When the store cannot serve: history compacted (410, the mirror lists again) or down (503)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from vrstack.config.client import ApiError, ConfigClient, Mirror
from vrstack.config.store import Compacted
from vrstack.config.store_etcd import EtcdStore
from vrstack.config.store_sqlite import SQLiteStore
from vrstack.config.testing import ADMIN_TOKEN, Etcd, free_port, running_api

pytestmark = pytest.mark.asyncio


async def test_sqlite_history_is_pruned_and_reported(tmp_path: Path) -> None:
    async with (
        running_api(SQLiteStore(str(tmp_path / "c.db"), history=5)) as url,
        ConfigClient(url, ADMIN_TOKEN) as c,
    ):
        mirror = Mirror(c, ["project"])
        await mirror.resync()
        assert mirror.resyncs == 1
        for i in range(12):
            await c.create("project", {"name": f"p{i}"})
        with pytest.raises(ApiError) as info:
            await c.watch(0, timeout=0)
        assert info.value.status == 410 and info.value.body["compact_revision"] >= 5
        # The mirror was at revision 0: it must list everything again and lose nothing.
        stop = asyncio.Event()
        async for _ in mirror.follow(stop):
            break
        assert mirror.resyncs == 2
        assert sorted(p["name"] for p in mirror.objects["project"].values()) == sorted(
            f"p{i}" for i in range(12)
        )
        # Recent history is still served.
        events, _ = await c.watch(mirror.revision - 1, timeout=0)
        assert len(events) == 1


async def test_etcd_compaction_is_reported(etcd: Etcd, tmp_path: Path) -> None:
    # Its own etcd: compaction is cluster-wide and would cut the history other tests read.
    own = Etcd(tmp_path)
    own.start()
    store = EtcdStore([own.url], prefix="/compaction-test/")
    await store.start()
    try:
        first = await store.txn({}, {"obj/p/1": {"n": 1}}, [])
        last = await store.txn({}, {"obj/p/2": {"n": 2}}, [])
        async with (
            aiohttp.ClientSession() as s,
            s.post(
                f"{own.url}/v3/kv/compaction", json={"revision": last, "physical": True}
            ) as resp,
        ):
            assert resp.status == 200
        with pytest.raises(Compacted) as info:
            await store.changes(first - 1, timeout=2)
        assert info.value.compact_revision == last
        assert await store.changes(last, timeout=0.1) == []
    finally:
        await store.close()
        own.stop()


async def test_store_down_is_a_clear_503(tmp_path: Path) -> None:
    # Nothing listens on this port: every request fails fast with a JSON 503.
    store = EtcdStore([f"http://127.0.0.1:{free_port()}"], timeout=1)
    async with running_api(store, "etcd") as url, ConfigClient(url, ADMIN_TOKEN) as c:
        with pytest.raises(ApiError) as info:
            await c.create("project", {"name": "p"})
        assert info.value.status == 503 and "no etcd endpoint answered" in info.value.body["error"]
        async with aiohttp.ClientSession() as s, s.get(f"{url}/health") as resp:
            assert resp.status == 503 and (await resp.json())["status"] == "error"


async def test_etcd_endpoints_fail_over(etcd: Etcd) -> None:
    # The first endpoint is down: reads, writes and watches use the next one.
    store = EtcdStore([f"http://127.0.0.1:{free_port()}", etcd.url], prefix="/failover/", timeout=2)
    await store.start()
    try:
        rev = await store.txn({}, {"obj/p/1": {"n": 1}}, [])
        assert (await store.get("obj/p/1")).value == {"n": 1}  # type: ignore[union-attr]
        events = await store.changes(rev - 1, timeout=2)
        assert [e.key for e in events] == ["obj/p/1"]
    finally:
        await store.close()
