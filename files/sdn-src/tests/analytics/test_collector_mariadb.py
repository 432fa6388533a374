"""The MariaDB store beyond what every store does (test_collector_query/_store run on
both): several collectors on one database (records, statuses, alarms and the page's
overview shared), kill -9 after an ack, resends stored once, retention in one collector
only, the SQL dialect, the config's store settings, TLS."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from collectorkit import Client, flow, running_collector, status
from mariadbkit import MariaDB, store

from vrstack.analytics.main import store_from_settings
from vrstack.analytics.overview import Fabric, Node
from vrstack.analytics.query import parse
from vrstack.analytics.records import check_record
from vrstack.analytics.sender import Sender
from vrstack.analytics.server import Options
from vrstack.analytics.store import Retention, StoreError
from vrstack.analytics.store_mariadb import Server, dialect
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, SRC, Daemon, wait_until
from vrstack.service.settings import Settings

MODULE = "vrstack.analytics.main"


def test_dialect_adapts_only_what_differs() -> None:
    body = {
        "table": "flows",
        "select": ["bucket(end,60)", "avg(bytes)", "sum(bytes)"],
        "where": [{"field": "vrf", "value": "100% ?"}],
        "since": 1.8e9,
        "group_by": ["bucket(end,60)"],
    }
    sql, params = parse(body, 1.9e9).sql(7, by_time=False)
    out = dialect(sql)
    assert "?" not in out and out.count("%s") == sql.count("?")  # placeholders only
    assert params[0] == "100% ?"  # the value stays a parameter, never SQL text
    assert "rowid" not in out and '"seq"' not in out and "seq <= %s" in out
    assert "+" not in out  # SQLite's index hints
    assert 'CAST(FLOOR("end" / 60) AS SIGNED)' in out  # floor, as SQLite's CAST truncates
    assert 'AVG(CAST("bytes" AS DOUBLE))' in out and 'SUM("bytes")' in out
    assert dialect("SELECT 'a%b' FROM t") == "SELECT 'a%%b' FROM t"


def rows(n: int, start: int = 0) -> list[tuple[Any, ...]]:
    return [check_record(flow(i), "r")[1] for i in range(start, start + n)]


@pytest.mark.asyncio
async def test_two_collectors_share_one_database(mariadb: MariaDB) -> None:
    """Two analytics nodes: each ingests its own sources, both answer for all of them."""
    server = mariadb.new_database()
    async with (
        running_collector(store(server)) as a,
        running_collector(store(server)) as b,
        Client(a.url) as ca,
        Client(b.url) as cb,
    ):
        # At the same time, several batches each: every record once, none lost.
        async def send(c: Client, source: str, base: int) -> None:
            for k in range(5):
                batch = [flow(base + k * 40 + i) for i in range(40)]
                assert await c.ingest(source, batch) == (200, {"accepted": 40, "duplicates": 0})

        await asyncio.gather(send(ca, "compute1", 0), send(cb, "compute2", 1000))
        for c in (ca, cb):
            by_source = await c.query(
                table="flows", select=["source", "count()", "sum(bytes)"], group_by=["source"]
            )
            assert by_source["items"] == [
                {"source": "compute1", "count()": 200, "sum(bytes)": sum(range(1000, 1200))},
                {"source": "compute2", "count()": 200, "sum(bytes)": sum(range(2000, 2200))},
            ]
            listed = await c.query_all(table="flows", select=["source", "id"], limit=33)
            assert len({(i["source"], i["id"]) for i in listed}) == len(listed) == 400
        # A batch resent to the other node (its answer was lost) is stored once.
        resent = [flow(i) for i in range(40)]
        assert await cb.ingest("compute1", resent) == (200, {"accepted": 0, "duplicates": 40})
        assert (await ca.query(table="flows", select=["count()"]))["items"] == [{"count()": 400}]
        assert (await a.collector.store.counts())["flows"] == 400
        assert (await b.collector.store.counts())["flows"] == 400


FABRIC = Fabric(
    "lab",
    (
        Node("ctl1", "rack1", "198.18.1.16", ("controller", "control", "analytics"), ()),
        Node("cmp1", "rack1", "198.18.1.17", ("compute",), ("ctl1",)),
    ),
)


@pytest.mark.asyncio
async def test_two_collectors_share_status_and_alarms(mariadb: MariaDB) -> None:
    """What one collector received or raised, the other answers at once: /status,
    /alarms and /overview come from the store, not from what each process saw."""
    server = mariadb.new_database()
    options = Options(missed_intervals=2, alarm_interval=0.05, fabric=FABRIC)
    async with (
        running_collector(store(server), options) as a,
        running_collector(store(server), options) as b,
        Client(a.url) as ca,
        Client(b.url) as cb,
    ):

        async def both(path: str) -> list[Any]:
            answers = [await c.call("GET", path) for c in (ca, cb)]
            assert [code for code, _ in answers] == [200, 200]
            assert answers[0][1]["items"] == answers[1][1]["items"], path
            return answers[1][1]["items"]  # type: ignore[no-any-return]

        # An agent's status sent to A only: B lists it too, with no alarm.
        assert (await ca.ingest("cmp1", [status("s1")]))[0] == 200
        listed = await both("/status")
        assert [(s["source"], s["state"], s["late"]) for s in listed] == [("cmp1", "up", False)]
        assert await both("/alarms") == []
        # The agent loses its control nodes (through A): B shows the same alarm.
        lost = status(
            "s2",
            connections=[
                {"type": "control", "name": "198.18.1.16", "state": "down"},
                {"type": "control", "name": "198.18.2.16", "state": "connecting"},
            ],
        )
        assert (await ca.ingest("cmp1", [lost]))[0] == 200
        alarms = await both("/alarms")
        assert [(x["id"], x["since"]) for x in alarms] == [
            ("control-lost:cmp1:vrstack-agent", lost["ts"])
        ]
        # B's overview (the operator's page) draws the node with A's report and alarm.
        code, view = await cb.call("GET", "/overview")
        assert code == 200
        node = next(n for r in view["racks"] for n in r["nodes"] if n["name"] == "cmp1")
        assert node["alarms"] == 1 and [x["id"] for x in view["alarms"]] == [alarms[0]["id"]]
        assert {(s["control"], s["state"]) for s in view["sessions"]} >= {("ctl1", "down")}
        # A service reported down through A, then up through B: cleared on both.
        down = status("d1", service="vrstack-api", state="down", connections=[])
        assert (await ca.ingest("ctl1", [down]))[0] == 200
        assert {x["id"] for x in await both("/alarms")} == {
            "control-lost:cmp1:vrstack-agent",
            "service-down:ctl1:vrstack-api",
        }
        assert (await cb.ingest("ctl1", [status("d2", service="vrstack-api", connections=[])]))[
            0
        ] == 200
        assert (await ca.ingest("cmp1", [status("s3")]))[0] == 200
        assert await both("/alarms") == []

        # A service reporting every 0.2 s to B stops: both find it late with one alarm
        # (timed from when it reached B), whichever collector's tick raised it.
        quick = status("q1", service="vrstack-control", interval=0.2, connections=[])
        assert (await cb.ingest("ctl1", [quick]))[0] == 200
        sent = time.time()

        async def late() -> list[Any]:
            items = await both("/alarms")
            return [x for x in items if x["type"] == "service-down"]

        (alarm,) = await wait_until(late, timeout=10)
        assert time.time() - sent >= 0.3 and alarm["source"] == "ctl1"
        assert alarm["since"] <= sent + 0.4  # arrival + 2 intervals, by B's clock
        lateness = {(s["service"], s["late"]) for s in await both("/status")}
        assert ("vrstack-control", True) in lateness
        # It reports again, to A: cleared on both.
        again = status("q2", service="vrstack-control", interval=60, connections=[])
        assert (await ca.ingest("ctl1", [again]))[0] == 200
        assert await both("/alarms") == []
        # Forgotten through A: gone from B.
        assert (await ca.call("DELETE", "/status/ctl1/vrstack-control"))[0] == 204
        assert [s["service"] for s in await both("/status")] == ["vrstack-agent", "vrstack-api"]


@pytest.mark.asyncio
async def test_a_resent_batch_is_stored_once(mariadb: MariaDB) -> None:
    s = store(mariadb.new_database())
    await s.start()
    try:
        assert await s.commit("c1", {"flows": rows(50)}) == (50, 0)
        assert await s.commit("c1", {"flows": rows(50)}) == (0, 50)
        assert await s.commit("c1", {"flows": rows(50, 25)}) == (25, 25)  # half new
        assert await s.commit("c2", {"flows": rows(10)}) == (10, 0)  # ids are per source
        assert await s.commit("c2", {}) == (0, 0)  # an empty batch
        total = await s.select(parse({"table": "flows", "select": ["count()"]}, 0))
        assert total["items"] == [{"count()": 85}]
        assert (await s.counts())["flows"] == 85
    finally:
        await s.close()


@pytest.mark.asyncio
async def test_retention_runs_in_one_collector_only(mariadb: MariaDB) -> None:
    server = mariadb.new_database()
    first, second = store(server), store(server)
    await first.start()
    await second.start()
    try:
        assert await first.commit("c1", {"flows": rows(30)}) == (30, 0)
        policy = {"flows": Retention(max_rows=10)}
        assert await first.prune(policy, 0, 5) == {"flows": 5}  # it takes the lock
        assert await second.prune(policy, 0, 5) == {"flows": 0}  # the other one waits
        assert await first.prune(policy, 0, 100) == {"flows": 15}
        await first.close()  # its lock goes with its connection
        await second.commit("c1", {"flows": rows(5, 100)})
        assert await second.prune(policy, 0, 100) == {"flows": 5}
        assert (await second.counts())["flows"] == 10
    finally:
        await first.close()
        await second.close()


def daemon_config(server: Server, password_file: Path) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {
            "backend": "mariadb",
            "host": server.host,
            "port": server.port,
            "database": server.database,
            "user": server.user,
            "password_file": str(password_file),
        },
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
    }


@pytest.mark.asyncio
async def test_kill9_after_ack_loses_nothing(mariadb: MariaDB, tmp_path: Path) -> None:
    """vrstack-collector on MariaDB as a process: everything acknowledged before kill -9
    is there after a restart, and the resends are counted as duplicates."""
    server = mariadb.new_database()
    secret = tmp_path / "db-password"
    secret.write_text(server.password + "\n")
    d = Daemon(MODULE, daemon_config(server, secret), tmp_path, "collector")
    try:
        d.start()
    except BaseException:
        d.kill()
        raise
    sender = Sender(
        d.url, "compute1", ADMIN_TOKEN, batch_size=200, flush_interval=0.01, backoff_min=0.05
    )
    stop = asyncio.Event()
    task = asyncio.ensure_future(sender.run(stop))
    try:
        for i in range(3000):
            sender.emit("flow", **{k: v for k, v in flow(i).items() if k not in ("kind", "id")})
            if i % 100 == 0:
                await asyncio.sleep(0.005)
        for _ in range(1000):  # until some, not all, are acknowledged
            if sender.stats["sent"] >= 600:
                break
            await asyncio.sleep(0.01)
        d.kill()
        acked = sender.stats["sent"]
        assert 600 <= acked < 3000, acked
        d.start()
        async with Client(d.url) as c:
            stored = (await c.query(table="flows", select=["count()"]))["items"][0]["count()"]
            assert acked <= stored <= 3000
            sender.url = d.url + "/ingest/compute1"
            assert await sender.flushed(30)
            assert (await c.query(table="flows", select=["count()"]))["items"] == [
                {"count()": 3000}
            ]
            assert sender.stats["sent"] + sender.stats["duplicates"] == 3000
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)
        d.kill()


def run_main(tmp_path: Path, text: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "collector.yaml"
    path.write_text(text + f"auth: {{admin_token: {ADMIN_TOKEN}}}\n")
    return subprocess.run(
        [sys.executable, "-m", MODULE, "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PYTHONPATH": str(SRC)},
    )


DB = "backend: mariadb, database: analytics, user: collector"


@pytest.mark.parametrize(
    ("store_yaml", "field"),
    [
        ("{backend: mysql, path: x.db}", "store.backend"),
        ("{backend: mariadb, host: 127.0.0.1, user: u, password: p}", "store.database"),
        ("{backend: mariadb, host: 127.0.0.1, database: a-b, user: u}", "store.database"),
        ("{backend: mariadb, host: 127.0.0.1, database: a, password: p}", "store.user"),
        (f"{{{DB}}}", "store.host"),
        (f"{{{DB}, host: h, socket: /run/mysqld/mysqld.sock}}", "store.host"),
        (f"{{{DB}, host: h, port: 0}}", "store.port"),
        (f"{{{DB}, host: h, password: p, password_file: /x}}", "store.password_file"),
        (f"{{{DB}, host: h, password_file: /no/such/file}}", "store.password_file"),
        (f"{{{DB}, host: h, path: x.db}}", "store.path"),
        (f"{{{DB}, host: h, tls: {{ca: /no/such/ca.pem}}}}", "store.tls.ca"),
        (f"{{{DB}, host: h, query_timeout: 0}}", "store.query_timeout"),
        ("{path: x.db, database: analytics}", "store.database"),
    ],
)
def test_bad_store_settings_name_the_field(tmp_path: Path, store_yaml: str, field: str) -> None:
    result = run_main(tmp_path, f"store: {store_yaml}\n")
    assert result.returncode == 2, result.stderr
    assert f"collector.yaml: {field}:" in result.stderr, result.stderr


def test_a_server_it_cannot_use_exits_1(mariadb: MariaDB, tmp_path: Path) -> None:
    server = mariadb.new_database()
    wrong = (
        f"store: {{backend: mariadb, host: 127.0.0.1, port: {server.port}, "
        f"database: {server.database}, user: {server.user}, password: wrong}}\n"
    )
    result = run_main(tmp_path, wrong)
    assert result.returncode == 1, result.stderr
    assert f"127.0.0.1:{server.port}/{server.database}" in result.stderr
    assert "Access denied" in result.stderr, result.stderr


def tls_settings(tmp_path: Path, server: Server, **tls: str) -> Settings:
    store_section: dict[str, Any] = {
        "backend": "mariadb",
        "host": server.host,
        "port": server.port,
        "database": server.database,
        "user": server.user,
        "password": server.password,
    }
    if tls:
        store_section["tls"] = tls
    return Settings(str(tmp_path / "collector.yaml"), {"store": store_section})


@pytest.mark.asyncio
async def test_tls_to_the_server(mariadb: MariaDB, tmp_path: Path) -> None:
    """`store.tls.ca`: a user the server only admits over TLS gets in, and the server's
    certificate is checked: with another CA the store does not start. (Without
    `store.tls`, PyMySQL 1.2 uses TLS when the server offers it, unverified.)"""
    server = mariadb.new_database(user="tlsuser", require_tls=True)
    s = store_from_settings(tls_settings(tmp_path, server, ca=str(mariadb.root / "ca.pem")))
    await s.start()
    try:
        assert await s.commit("c1", {"flows": rows(3)}) == (3, 0)
    finally:
        await s.close()
    other = tls_settings(tmp_path, server, ca=str(mariadb.root / "other-ca.pem"))
    stranger = store_from_settings(other)
    with pytest.raises(StoreError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await stranger.start()
    await stranger.close()
