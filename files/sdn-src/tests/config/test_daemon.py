"""vrstack-api as a real process: config file, JSON logs, health, SIGTERM, kill -9."""

from __future__ import annotations

import asyncio
import json
import pstats
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from vrstack.config.client import ApiError, ConfigClient
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, SRC, Daemon, Etcd


def api_config(tmp_path: Path, **store: Any) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": store or {"backend": "sqlite", "path": str(tmp_path / "config.db")},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
        "log": {"level": "info"},
    }


@pytest.mark.asyncio
async def test_health_json_logs_and_clean_sigterm(tmp_path: Path) -> None:
    api = Daemon("vrstack.config.main", api_config(tmp_path), tmp_path, "api")
    api.start()
    try:
        async with ConfigClient(api.url, ADMIN_TOKEN) as c:
            health = await c.request("GET", "/health")
            assert health["status"] == "ok" and health["backend"] == "sqlite"
            await c.create("project", {"name": "demo"})
    finally:
        rc = api.terminate()
    assert rc == 0
    events = [line.get("event") for line in api.logs()]
    assert events[-3:] == ["listening", "shutdown", "stopped"] or {"shutdown", "stopped"} <= set(
        events
    )
    assert all({"ts", "level", "service", "msg"} <= set(line) for line in api.logs())


@pytest.mark.asyncio
async def test_profiled_daemon_writes_its_profile_at_a_clean_stop(tmp_path: Path) -> None:
    """The benchmarks' --profile: the service runs under cProfile and still serves."""
    prof = tmp_path / "api.prof"
    api = Daemon("vrstack.config.main", api_config(tmp_path), tmp_path, "api", str(prof))
    api.start()
    try:
        async with ConfigClient(api.url, ADMIN_TOKEN) as c:
            await c.create("project", {"name": "demo"})
    finally:
        assert api.terminate() == 0
    stats = pstats.Stats(str(prof))
    assert any(fn == "create" and "config/objects.py" in path for path, _, fn in stats.stats)  # type: ignore[attr-defined]


def run_main(tmp_path: Path, name: str, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / name
    path.write_text(text)
    return subprocess.run(
        [sys.executable, "-m", "vrstack.config.main", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(SRC)},
    )


@pytest.mark.parametrize(
    ("name", "text", "field"),
    [
        ("a.yaml", "store: {backend: sqlite, path: /tmp/x.db}\nauth: {}\n", "auth.admin_token"),
        ("b.yaml", "store: {backend: mysql}\n", "store.backend"),
        (
            "c.yaml",
            "store: {backend: sqlite, path: x}\nauth: {admin_token: short}\n",
            "auth.admin_token",
        ),
        ("d.ini", "[store]\nbackend = etcd\nendpoints = 127.0.0.1:2379\n", "store.endpoints[0]"),
        (
            "f.yaml",
            "store: {backend: sqlite, path: x}\n"
            "auth: {admin_token: 0123456789abcdef0, agent_token: 0123456789abcdef0}\n",
            "auth.agent_token",
        ),
        (
            "e.ini",
            "[store]\npath = x.db\n[auth]\nadmin_token = 0123456789abcdef0\n"
            "[listen]\nport = http\n",
            "listen.port",
        ),
        ("f.yaml", "store: [1, 2\n", ""),
    ],
)
def test_bad_config_names_file_and_field(tmp_path: Path, name: str, text: str, field: str) -> None:
    result = run_main(tmp_path, name, text)
    assert result.returncode == 2
    assert str(tmp_path / name) in result.stderr and field in result.stderr, result.stderr


def test_missing_config_file(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "vrstack.config.main", "--config", str(tmp_path / "none.yaml")],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(SRC)},
    )
    assert result.returncode == 2 and "none.yaml" in result.stderr


@pytest.mark.asyncio
async def test_kill9_mid_load_loses_no_acknowledged_object(tmp_path: Path) -> None:
    api = Daemon("vrstack.config.main", api_config(tmp_path), tmp_path, "api")
    api.start()
    acked: list[tuple[str, str]] = []
    try:
        async with ConfigClient(api.url, ADMIN_TOKEN, timeout=5) as c:
            project = await c.create("project", {"name": "load"})
            net = await c.create(
                "virtual-network",
                {
                    "name": "n",
                    "parent_uuid": project["uuid"],
                    "subnets": [{"cidr": "198.18.96.0/20"}],
                },
            )
            acked += [("project", project["uuid"]), ("virtual-network", net["uuid"])]
            net_uuid = net["uuid"]
            stop_at = time.monotonic() + 20

            async def worker(w: int) -> None:
                for i in range(10_000):
                    if time.monotonic() > stop_at:
                        return
                    try:
                        port = await c.create(
                            "virtual-machine-interface",
                            {
                                "name": f"w{w}-{i}",
                                "parent_uuid": project["uuid"],
                                "virtual_network": net["uuid"],
                            },
                        )
                    except Exception:
                        return  # the server died under us: that request is not acknowledged
                    acked.append(("virtual-machine-interface", port["uuid"]))

            workers = [asyncio.ensure_future(worker(w)) for w in range(16)]
            deadline = time.monotonic() + 15
            while len(acked) < 300 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            api.kill()  # SIGKILL while requests are in flight
            await asyncio.gather(*workers)
    finally:
        api.kill()
    assert len(acked) >= 300
    api.start()
    try:
        async with ConfigClient(api.url, ADMIN_TOKEN) as c:
            missing = [(t, u) for t, u in acked if await c.get(t, u) is None]
            assert missing == []
            ports, _ = await c.list_all("virtual-machine-interface")
            addrs = [p["fixed_ips"][0]["ip_address"] for p in ports]
            assert len(addrs) == len(set(addrs)) >= len(acked) - 2
            # The indexes agree with the objects: once every port is gone (acknowledged or
            # committed just before the kill), nothing references the network any more.
            await asyncio.gather(*(c.delete("virtual-machine-interface", p["uuid"]) for p in ports))
            await c.delete("virtual-network", net_uuid)
            await c.create("project", {"name": "after-crash"})
    finally:
        assert api.terminate() == 0
    with sqlite3.connect(tmp_path / "config.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert db.execute("SELECT COUNT(*) FROM kv WHERE key LIKE 'ip/%'").fetchone() == (0,)


@pytest.mark.asyncio
async def test_two_api_servers_share_etcd(tmp_path: Path, etcd: Etcd) -> None:
    store = {"backend": "etcd", "endpoints": [etcd.url], "prefix": "/daemon-test/"}
    a = Daemon("vrstack.config.main", api_config(tmp_path, **store), tmp_path, "a")
    b = Daemon("vrstack.config.main", api_config(tmp_path, **store), tmp_path, "b")
    a.start()
    b.start()
    try:
        async with ConfigClient(a.url, ADMIN_TOKEN) as ca, ConfigClient(b.url, ADMIN_TOKEN) as cb:
            start = (await cb.request("GET", "/health"))["revision"]
            project = await ca.create("project", {"name": "shared"})
            events, _ = await cb.watch(start, timeout=5)
            assert [e["uuid"] for e in events] == [project["uuid"]]
            net = await cb.create(
                "virtual-network",
                {
                    "name": "n",
                    "parent_uuid": project["uuid"],
                    "subnets": [{"cidr": "198.18.112.0/24"}],
                },
            )
            # Both servers allocate from the same subnet at once: no address twice.
            ports = await asyncio.gather(
                *(
                    (ca if i % 2 else cb).create(
                        "virtual-machine-interface",
                        {
                            "name": f"p{i}",
                            "parent_uuid": project["uuid"],
                            "virtual_network": net["uuid"],
                        },
                    )
                    for i in range(30)
                )
            )
            addrs = {p["fixed_ips"][0]["ip_address"] for p in ports}
            assert len(addrs) == 30
            with pytest.raises(ApiError) as info:
                await ca.delete("virtual-network", net["uuid"])
            assert info.value.status == 409
    finally:
        assert a.terminate() == 0
        assert b.terminate() == 0


@pytest.mark.asyncio
async def test_second_server_on_one_sqlite_file_is_refused(tmp_path: Path) -> None:
    api = Daemon("vrstack.config.main", api_config(tmp_path), tmp_path, "api")
    api.start()
    try:
        other = run_main(tmp_path, "other.yaml", json.dumps(api_config(tmp_path)))
        assert other.returncode == 1 and "in use by another vrstack-api" in other.stderr
        assert "Traceback" not in other.stderr
    finally:
        assert api.terminate() == 0
