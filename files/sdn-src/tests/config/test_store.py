"""The storage contract, run against every backend."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from vrstack.config.store import Conflict, Store, StoreUnavailable
from vrstack.config.store_sqlite import SQLiteStore

pytestmark = pytest.mark.asyncio


async def test_txn_compares_mod_revision(store: Store) -> None:
    r1 = await store.txn({"obj/a/1": 0}, {"obj/a/1": {"v": 1}}, [])
    kv = await store.get("obj/a/1")
    assert kv is not None and kv.value == {"v": 1} and kv.mod_rev == r1
    # Creating it again (compare absent) must fail and change nothing.
    with pytest.raises(Conflict):
        await store.txn({"obj/a/1": 0}, {"obj/a/1": {"v": 2}, "obj/a/2": {"v": 2}}, [])
    assert (await store.get("obj/a/1")).value == {"v": 1}  # type: ignore[union-attr]
    assert await store.get("obj/a/2") is None
    assert await store.revision() == r1
    r2 = await store.txn({"obj/a/1": r1}, {"obj/a/1": {"v": 3}}, [])
    assert r2 > r1
    with pytest.raises(Conflict):
        await store.txn({"obj/a/1": r1}, {}, ["obj/a/1"])
    r3 = await store.txn({"obj/a/1": r2}, {}, ["obj/a/1"])
    assert r3 > r2 and await store.get("obj/a/1") is None


async def test_range_is_ordered_and_pages(store: Store) -> None:
    for i in range(25):
        await store.txn({}, {f"obj/t/{i:03d}": {"i": i}, f"other/{i}": {}}, [])
    page1 = await store.range("obj/t/", limit=10)
    assert [kv.value["i"] for kv in page1] == list(range(10))
    page3 = await store.range("obj/t/", start_after="obj/t/019", limit=10)
    assert [kv.value["i"] for kv in page3] == list(range(20, 25))
    assert await store.range("obj/u/") == []


async def test_changes_resume_and_wait(store: Store) -> None:
    r0 = await store.revision()
    r1 = await store.txn({}, {"obj/x/1": {"n": 1}, "idx/1": {}}, [])
    r2 = await store.txn({}, {}, ["obj/x/1"])
    events = await store.changes(r0, timeout=1)
    # Only watched keys, whole revisions, in order; deletes carry the previous value.
    assert [(e.revision, e.key, e.value) for e in events][:1] == [(r1, "obj/x/1", {"n": 1})]
    all_events = events if events[-1].revision == r2 else events + await store.changes(r1, 1)
    assert all_events[-1].revision == r2 and all_events[-1].value is None
    assert all_events[-1].prev == {"n": 1}
    assert await store.changes(r2, timeout=0.2) == []

    async def later() -> int:
        await asyncio.sleep(0.2)
        return await store.txn({}, {"obj/x/2": {"n": 2}}, [])

    waiter = asyncio.ensure_future(store.changes(r2, timeout=10))
    r3 = await later()
    got = await asyncio.wait_for(waiter, 5)
    assert [(e.revision, e.key) for e in got] == [(r3, "obj/x/2")]


async def test_sqlite_file_has_one_server(tmp_path: Path) -> None:
    first = SQLiteStore(str(tmp_path / "c.db"))
    await first.start()
    second = SQLiteStore(str(tmp_path / "c.db"))
    with pytest.raises(StoreUnavailable, match="in use by another"):
        await second.start()
    await first.close()
    await second.start()  # free again once the first server is gone
    await second.close()
