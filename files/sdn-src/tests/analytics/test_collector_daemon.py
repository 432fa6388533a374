"""vrstack-collector as a real process: config errors, health, SIGTERM, kill -9 after ack."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from collectorkit import Client, flow

from vrstack.analytics.sender import Sender
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, SRC, Daemon

MODULE = "vrstack.analytics.main"


def config(tmp_path: Path, **extra: Any) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {"path": str(tmp_path / "analytics.db")},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
        "log": {"level": "info"},
        **extra,
    }


@pytest.mark.asyncio
async def test_health_logs_and_clean_sigterm(tmp_path: Path) -> None:
    d = Daemon(MODULE, config(tmp_path), tmp_path, "collector")
    try:
        d.start()
        async with Client(d.url) as c:
            code, health = await c.call("GET", "/health")
            assert code == 200 and health["status"] == "ok"
            assert (await c.ingest("compute1", [flow(1)]))[0] == 200
            assert (await c.call("GET", "/health"))[1]["accepted"] == 1
    finally:
        rc = d.terminate()
    assert rc == 0
    events = [line.get("event") for line in d.logs()]
    assert {"listening", "shutdown", "stopped"} <= set(events)
    assert all({"ts", "level", "service", "msg"} <= set(line) for line in d.logs())


@pytest.mark.asyncio
async def test_kill9_after_ack_loses_nothing(tmp_path: Path) -> None:
    """Every record the sender saw acknowledged is there after kill -9 and a restart."""
    d = Daemon(MODULE, config(tmp_path), tmp_path, "collector")
    try:
        d.start()
    except BaseException:
        d.kill()  # it may be running without having said where
        raise
    sender = Sender(
        d.url,
        "compute1",
        ADMIN_TOKEN,
        batch_size=200,
        flush_interval=0.01,
        backoff_min=0.05,
        backoff_max=0.1,
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(sender.run(stop))
    try:
        for i in range(3000):
            sender.emit("flow", **{k: v for k, v in flow(i).items() if k not in ("kind", "id")})
            if i % 100 == 0:
                await asyncio.sleep(0.005)
        for _ in range(500):  # until some, not all, are acknowledged
            if sender.stats["sent"] >= 600:
                break
            await asyncio.sleep(0.01)
        d.kill()  # SIGKILL while batches are in flight
        acked = sender.stats["sent"]
        assert 600 <= acked < 3000, acked
        d.start()  # same file, new port
        async with Client(d.url) as c:
            stored = (await c.query(table="flows", select=["count()"]))["items"][0]["count()"]
            assert acked <= stored <= 3000
            # Point the sender at the new port and let it finish: the batch in flight at the
            # kill was committed or not; if it was, its resend counts as duplicates.
            sender.url = d.url + "/ingest/compute1"
            assert await sender.flushed(20)
            stored = await c.query(table="flows", select=["count()"])
            assert stored["items"] == [{"count()": 3000}]
            assert sender.stats["sent"] + sender.stats["duplicates"] == 3000
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        d.kill()


def run_main(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", MODULE, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(SRC)},
    )


AUTH = f"auth: {{admin_token: {ADMIN_TOKEN}}}\n"
KEYSTONE = (
    "auth: {backend: keystone, keystone: {url: http://127.0.0.1:1, username: u, password: p}}\n"
)


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("a.yaml", AUTH, "store.path"),
        ("b.yaml", "store: {path: x.db}\nauth: {}\n", "auth.admin_token"),
        ("c.yaml", "store: {path: x.db, synchronous: off}\n" + AUTH, "store.synchronous"),
        (
            "d.yaml",
            "store: {path: x.db}\nlimits: {max_batch_records: 0}\n" + AUTH,
            "limits.max_batch_records",
        ),
        (
            "e.yaml",
            "store: {path: x.db}\nlimits: {max_batch_records: 500, source_burst: 100}\n" + AUTH,
            "limits.source_burst",
        ),
        (
            "f.yaml",
            "store: {path: x.db}\nretention: {flows: {max_age: -1}}\n" + AUTH,
            "retention.flows.max_age",
        ),
        (
            "g.yaml",
            "store: {path: x.db}\nretention: {flow: {max_age: 1}}\n" + AUTH,
            "retention.flow",
        ),
        (
            "h.ini",
            f"[store]\npath = x.db\n[auth]\nadmin_token = {ADMIN_TOKEN}\n"
            "[alarms]\nmissed_intervals = many\n",
            "alarms.missed_intervals",
        ),
        ("i.yaml", "store: [1, 2\n", ""),
        # Keystone: read-only tokens see their project's part, found through the config API.
        ("j.yaml", "store: {path: x.db}\n" + KEYSTONE, "config_api.url"),
        (
            "k.yaml",
            "store: {path: x.db}\nconfig_api: {url: ftp://x}\n" + KEYSTONE,
            "config_api.url",
        ),
        (
            "l.yaml",
            "store: {path: x.db}\nconfig_api: {url: http://127.0.0.1:1, cache_ttl: -1}\n"
            + KEYSTONE,
            "config_api.cache_ttl",
        ),
        (
            "m.yaml",
            "store: {path: x.db}\nconfig_api: {url: http://x, user: u}\n" + AUTH,
            "config_api.user",
        ),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, name: str, text: str, field: str) -> None:
    result = run_main(tmp_path, name, text)
    assert result.returncode == 2, result.stderr
    assert str(tmp_path / name) in result.stderr and field in result.stderr, result.stderr


def test_unusable_store_exits_1(tmp_path: Path) -> None:
    result = run_main(tmp_path, "s.yaml", f"store: {{path: {tmp_path}/no/such/dir.db}}\n" + AUTH)
    assert result.returncode == 1 and "no/such/dir.db" in result.stderr, result.stderr
