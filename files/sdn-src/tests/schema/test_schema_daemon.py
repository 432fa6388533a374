"""vrstack-schema as a real process next to a real vrstack-api process."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import pytest

from vrstack.config.client import ConfigClient
from vrstack.config.testing import ADMIN_TOKEN, Daemon, wait_until

pytestmark = pytest.mark.asyncio


async def test_schema_daemon_derives_objects_and_stops_cleanly(tmp_path: Path) -> None:
    api = Daemon(
        "vrstack.config.main",
        {
            "listen": {"host": "127.0.0.1", "port": 0},
            "store": {"backend": "sqlite", "path": str(tmp_path / "config.db")},
            "auth": {"admin_token": ADMIN_TOKEN},
        },
        tmp_path,
        "api",
    )
    api.start()
    schema = None
    try:
        schema = Daemon(
            "vrstack.schema.main",
            {
                "api": {"url": api.url, "token": ADMIN_TOKEN},
                "listen": {"host": "127.0.0.1", "port": 0},
            },
            tmp_path,
            "schema",
        )
        schema.start()
        async with aiohttp.ClientSession() as s, ConfigClient(api.url, ADMIN_TOKEN) as c:

            async def health() -> tuple[int, dict[str, object]]:
                async with s.get(f"{schema.url}/health") as resp:
                    return resp.status, await resp.json()

            # No global-config yet: the transformer says why it is not ready.
            status, body = await wait_until(lambda: _reported(health), timeout=15)
            assert status == 503 and "global-config" in str(body["last_error"])
            await c.create("global-config", {"name": "default", "asn": 64512})
            project = await c.create("project", {"name": "demo"})
            net = await c.create("virtual-network", {"name": "n", "parent_uuid": project["uuid"]})

            async def derived() -> list[dict[str, object]]:
                ris, _ = await c.list_all("routing-instance", parent_uuid=net["uuid"])
                return ris

            ris = await wait_until(derived, timeout=15)
            assert ris[0]["route_target"] == "target:64512:8000000"
            status, body = await wait_until(lambda: _healthy(health), timeout=15)
            assert body["connected"] is True

            # It reports itself in the API too, for tools that only talk to the API.
            async def reported() -> list[dict[str, object]]:
                items, _ = await c.list_all("service-health", service="schema", status="up")
                return items

            assert (await wait_until(reported, timeout=10))[0]["detail"] == ""
        assert schema.terminate() == 0
        assert {"shutdown", "stopped"} <= {line.get("event") for line in schema.logs()}
    finally:
        if schema is not None:
            schema.kill()
        assert api.terminate() == 0


async def _reported(health: object) -> tuple[int, dict[str, object]] | None:
    status, body = await health()  # type: ignore[operator]
    return (status, body) if body.get("reconciles") is not None and body.get("last_error") else None


async def _healthy(health: object) -> tuple[int, dict[str, object]] | None:
    status, body = await health()  # type: ignore[operator]
    return (status, body) if status == 200 else None
