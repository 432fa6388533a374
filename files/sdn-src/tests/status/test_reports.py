"""Services report to a real collector: vrstack-api, vrstack-schema and vrstack-control
run as processes with `analytics.url` set; the collector stores their status (with
connections), their counters, and a last `down` status at SIGTERM. The agent's hook
(vrstack.status.agent_report) reports an Agent the same way."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from vrstack.agent.agent import Agent, AgentSettings
from vrstack.agent.program import Fabric
from vrstack.analytics.sender import Sender
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, Daemon, free_port
from vrstack.schema.main import main as schema_main
from vrstack.status import agent_report, report

NOPROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def call(url: str, body: Any = None) -> Any:
    req = urllib.request.Request(url, data=None if body is None else json.dumps(body).encode())
    req.add_header("X-Auth-Token", READER_TOKEN)
    req.add_header("Content-Type", "application/json")
    with NOPROXY.open(req, timeout=10) as resp:
        return json.loads(resp.read())


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.2)
    raise AssertionError(f"not within {timeout}s: {what}")


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Daemon]:
    cfg = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {"path": str(tmp_path / "analytics.db")},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
    }
    d = Daemon("vrstack.analytics.main", cfg, tmp_path, "collector")
    d.start()
    try:
        yield d
    finally:
        assert d.terminate() == 0


def statuses(url: str) -> dict[tuple[str, str], dict[str, Any]]:
    return {(s["source"], s["service"]): s for s in call(url + "/status")["items"]}


def test_services_report_status_connections_counters_and_down(
    collector: Daemon, tmp_path: Path
) -> None:
    analytics = {"url": collector.url, "token": ADMIN_TOKEN, "source": "ctl1", "interval": 1}
    api_port = free_port()
    api = Daemon(
        "vrstack.config.main",
        {
            "listen": {"host": "127.0.0.1", "port": api_port},
            "store": {"backend": "sqlite", "path": str(tmp_path / "config.db")},
            "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
            "analytics": analytics,
        },
        tmp_path,
        "api",
    )
    api.start()
    api_url = f"http://127.0.0.1:{api_port}"
    schema = Daemon(
        "vrstack.schema.main",
        {
            "api": {"url": api_url, "token": ADMIN_TOKEN},
            "listen": {"port": 0},
            "analytics": analytics,
        },
        tmp_path,
        "schema",
    )
    control = Daemon(
        "vrstack.control.main",
        {
            "name": "ctl1",
            "api": {"url": api_url, "token": ADMIN_TOKEN},
            "bgp": {"address": "127.0.0.1", "port": free_port()},
            "xmpp": {"host": "127.0.0.1", "port": free_port()},
            "listen": {"port": 0},
            "analytics": analytics,
        },
        tmp_path,
        "control",
    )
    schema.start()
    control.start()
    try:
        want = {("ctl1", s) for s in ("vrstack-api", "vrstack-schema", "vrstack-control")}
        got = wait_for(
            lambda: (s := statuses(collector.url)) and want <= set(s) and s, 20, "three statuses"
        )
        api_st = got[("ctl1", "vrstack-api")]
        assert api_st["state"] == "up" and api_st["interval"] == 1
        assert api_st["connections"] == [{"type": "store", "name": "sqlite", "state": "up"}]
        schema_conns = got[("ctl1", "vrstack-schema")]["connections"]
        assert schema_conns == [{"type": "config", "name": api_url, "state": "up"}]
        ctl = got[("ctl1", "vrstack-control")]
        assert {"type": "config", "name": api_url, "state": "up"} in ctl["connections"]
        # No global-config with an AS number yet: the control node is still starting.
        assert ctl["state"] == "initializing" and "bgp" in ctl["detail"]

        counters = call(
            collector.url + "/query",
            {
                "table": "counters",
                "select": ["name", "count()"],
                "where": [{"field": "source", "value": "ctl1"}],
                "group_by": ["name"],
                "limit": 100,
            },
        )["items"]
        names = {c["name"] for c in counters}
        assert {"vrstack-api.revision", "vrstack-schema.reconciles",
                "vrstack-control.agents", "vrstack-control.bgp_peers"} <= names  # fmt: skip
    finally:
        assert control.terminate() == 0
        assert schema.terminate() == 0
    # A clean stop says so: the last status is down.
    after = wait_for(
        lambda: (
            (s := statuses(collector.url))[("ctl1", "vrstack-control")]["state"] == "down" and s
        ),
        10,
        "control down",
    )
    assert after[("ctl1", "vrstack-control")]["detail"] == "stopped"
    assert after[("ctl1", "vrstack-schema")]["state"] == "down"
    assert after[("ctl1", "vrstack-api")]["state"] == "up"
    assert api.terminate() == 0


def test_no_analytics_section_sends_nothing_and_bad_one_exits_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "schema.yaml"
    base = {"api": {"url": "http://127.0.0.1:1", "token": "t"}}
    for bad, field in (
        ({"url": "ftp://x"}, "analytics.url"),
        ({"url": "http://127.0.0.1:1", "source": "a b"}, "analytics.source"),
        ({"url": "http://127.0.0.1:1", "interval": 0}, "analytics.interval"),
    ):
        path.write_text(json.dumps({**base, "analytics": bad}))
        assert schema_main(["--config", str(path)]) == 2
        assert f"{path}: {field}:" in capsys.readouterr().err
    from vrstack.service.settings import Settings

    path.write_text(json.dumps(base))
    assert report.options(Settings.load(path)) is None


@pytest.mark.asyncio
async def test_agent_hook_reports_sessions_and_datapath(collector: Daemon) -> None:
    agent = Agent(
        AgentSettings(
            name="cmp1",
            fabric=Fabric(address="198.18.2.11"),
            controls=[("127.0.0.1", free_port()), ("127.0.0.1", free_port())],
            datapath_socket="/nonexistent/control.sock",
        )
    )
    snap = await agent_report.snapshot(agent)
    assert (snap.state, snap.datapath) == ("initializing", "absent")
    assert [c["state"] for c in snap.connections] == ["down", "down"]
    assert snap.counters["sessions_up"] == 0

    sender = Sender(collector.url, "cmp1", ADMIN_TOKEN, flush_interval=0.1)
    reporter = report.Reporter(sender, "vrstack-agent", 1, lambda: agent_report.snapshot(agent))
    stop = asyncio.Event()
    task = asyncio.ensure_future(reporter.run(stop))
    for _ in range(100):
        got = await asyncio.to_thread(statuses, collector.url)
        if ("cmp1", "vrstack-agent") in got:
            break
        await asyncio.sleep(0.1)
    st = got[("cmp1", "vrstack-agent")]
    assert st["state"] == "initializing" and st["datapath"] == "absent"
    assert [c["type"] for c in st["connections"]] == ["control", "control"]
    stop.set()
    await asyncio.wait_for(task, 15)
    assert sender.backlog == 0 and reporter.reports >= 1
