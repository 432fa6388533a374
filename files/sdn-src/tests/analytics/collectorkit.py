"""Helpers for the collector tests: an in-process collector on loopback, a small client,
and record makers."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from vrstack.analytics.server import COLLECTOR, Collector, Options, make_app
from vrstack.analytics.store import AnalyticsStore
from vrstack.analytics.store_sqlite import SQLiteStore
from vrstack.config.auth import StaticTokens
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN

NOW = time.time()


@dataclass
class Running:
    url: str
    app: web.Application

    @property
    def collector(self) -> Collector:
        return self.app[COLLECTOR]


@contextlib.asynccontextmanager
async def running_collector(
    path: Path | AnalyticsStore, options: Options | None = None, port: int = 0
) -> AsyncIterator[Running]:
    """A collector on 127.0.0.1 (ephemeral port unless given) over the SQLite file `path`."""
    store = path if isinstance(path, AnalyticsStore) else SQLiteStore(str(path))
    app = make_app(store, StaticTokens(ADMIN_TOKEN, READER_TOKEN), options or Options())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        yield Running(f"http://127.0.0.1:{port}", app)
    finally:
        await runner.cleanup()


class Client:
    """Raw HTTP to the collector: returns (status, body) so tests can check errors."""

    def __init__(self, url: str, token: str | None = ADMIN_TOKEN) -> None:
        self.url = url
        headers = {"X-Auth-Token": token} if token else {}
        self.session = aiohttp.ClientSession(headers=headers)

    async def __aenter__(self) -> Client:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        data: bytes | None = None,
        content_type: str = "application/json",
    ) -> tuple[int, Any]:
        kwargs: dict[str, Any] = {}
        if data is not None:
            kwargs = {"data": data, "headers": {"Content-Type": content_type}}
        elif body is not None:
            kwargs = {"json": body}
        async with self.session.request(method, self.url + path, **kwargs) as resp:
            try:
                answer = await resp.json()
            except (aiohttp.ContentTypeError, ValueError):
                answer = await resp.text()
            return resp.status, answer

    async def ingest(self, source: str, records: list[dict[str, Any]]) -> tuple[int, Any]:
        return await self.call("POST", f"/ingest/{source}", {"records": records})

    async def query(self, **body: Any) -> dict[str, Any]:
        status, answer = await self.call("POST", "/query", body)
        assert status == 200, answer
        return answer  # type: ignore[no-any-return]

    async def query_all(self, **body: Any) -> list[dict[str, Any]]:
        """Every page of a query, bounded."""
        items: list[dict[str, Any]] = []
        for _ in range(1000):
            page = await self.query(**body)
            items += page["items"]
            if page["next"] is None:
                return items
            body["cursor"] = page["next"]
        raise AssertionError("more than 1000 pages")


def flow(i: int, **over: Any) -> dict[str, Any]:
    rec = {
        "kind": "flow",
        "id": f"f{i}",
        "start": NOW - 600 + i,
        "end": NOW - 590 + i,
        "vrf": "demo:blue:blue",
        "src_ip": f"198.18.10.{i % 250 + 1}",
        "dst_ip": "198.18.20.5",
        "proto": 6,
        "src_port": 40000 + i,
        "dst_port": 80,
        "bytes": 1000 + i,
        "packets": 10,
        "action": "forward",
    }
    rec.update(over)
    return rec


def status(i: str, **over: Any) -> dict[str, Any]:
    rec = {
        "kind": "status",
        "id": i,
        "ts": time.time(),
        "service": "vrstack-agent",
        "state": "up",
        "interval": 10,
        "connections": [
            {"type": "control", "name": "198.18.1.11", "state": "up"},
            {"type": "control", "name": "198.18.1.12", "state": "up"},
        ],
        "datapath": "present",
    }
    rec.update(over)
    return rec
