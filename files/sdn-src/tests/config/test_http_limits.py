"""vrstack-api (a real process) against slow and oversized HTTP requests.

With `http.header_timeout` and `http.body_timeout` at 2 s: a crowd of slowloris
connections trickling their request heads, and connections that send nothing, are
closed within the header timeout; a body trickled a byte at a time gets 408 within the
body timeout; a body declared larger than 16 MiB gets 413 before it is read, and one
sent chunked gets 413 once it passes 16 MiB. Meanwhile another client keeps creating
projects, and none of the bad requests leaves anything in the store.

Then the connection limits (`http.max_connections*`): one source opening more than its
cap has the extra connections closed at once, unanswered, while another source is
served and the good client goes on; the total cap holds; closed connections give their
places back; each refusing source is logged, a flood in few lines.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from vrstack.config.client import ConfigClient
from vrstack.config.openapi import MAX_BODY
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, Daemon
from vrstack.service.rawclient import RawClient, wait_refused

TIMEOUT = 2.0  # both http timeouts
SLACK = 2.0  # scheduling on a loaded 2-core machine
CROWD = 50
HEAD = (
    "POST /projects HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Auth-Token: {token}\r\n"
    "Content-Type: application/json\r\n{extra}\r\n"
)


def _head(extra: str) -> bytes:
    return HEAD.format(token=ADMIN_TOKEN, extra=extra).encode()


def api_config(tmp_path: Path, http: dict[str, Any]) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {"backend": "sqlite", "path": str(tmp_path / "config.db")},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
        "http": http,
    }


@contextlib.contextmanager
def api_daemon(tmp_path: Path, http: dict[str, Any]) -> Iterator[Daemon]:
    daemon = Daemon("vrstack.config.main", api_config(tmp_path, http), tmp_path, "api")
    daemon.start()
    try:
        yield daemon
    finally:
        assert daemon.terminate() == 0


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Daemon]:
    # The crowds below come from one address: room for them.
    http = {"header_timeout": TIMEOUT, "body_timeout": TIMEOUT, "max_connections_per_source": 500}
    with api_daemon(tmp_path, http) as daemon:
        yield daemon


class GoodClient:
    """Creates a project every 0.1 s, each on a fresh connection, timing each."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.created: list[str] = []
        self.slowest = 0.0

    async def run(self, stop: asyncio.Event) -> None:
        for i in range(10_000):
            if stop.is_set():
                return
            started = time.monotonic()
            async with ConfigClient(self.url, ADMIN_TOKEN) as c:
                obj = await c.create("project", {"name": f"good{i}"})
            self.slowest = max(self.slowest, time.monotonic() - started)
            self.created.append(obj["name"])
            await asyncio.sleep(0.1)


@pytest.mark.asyncio
async def test_slow_and_oversized_requests_are_cut_off_while_others_are_served(
    api: Daemon,
) -> None:
    good = GoodClient(api.url)
    stop = asyncio.Event()
    traffic = asyncio.ensure_future(good.run(stop))
    report: dict[str, Any] = {}
    try:
        body = json.dumps({"name": "slow"}).encode()
        whole = _head(f"Content-Length: {len(body)}\r\n") + body

        # Slowloris heads, and connections that never send a byte.
        crowd = [await RawClient(api.port).connect() for _ in range(CROWD)]
        silent = [await RawClient(api.port).connect() for _ in range(CROWD)]
        trickles = [asyncio.ensure_future(c.trickle(whole, 0.5)) for c in crowd]

        # A body a byte at a time after a complete head.
        slow_body = await RawClient(api.port).connect()
        await slow_body.send(_head(f"Content-Length: {len(body)}\r\n"))
        began = time.monotonic()
        body_trickle = asyncio.ensure_future(slow_body.trickle(body, 0.5))
        report["slow body answered"] = await slow_body.answered_within(began, TIMEOUT + SLACK)
        assert slow_body.status() == 408
        answer = json.loads(slow_body.body().split(b"\n")[-1] or b"{}")
        assert answer["limit"] == "http.body_timeout", answer
        await slow_body.closed_within(began, TIMEOUT + SLACK)
        assert await body_trickle < len(body)

        # A declared size over the limit: refused before the body is read.
        declared = await RawClient(api.port).connect()
        await declared.send(_head(f"Content-Length: {MAX_BODY + 1}\r\n") + b'{"name": ')
        report["declared 413"] = await declared.answered_within(time.monotonic(), SLACK)
        assert declared.status() == 413 and b"at most" in declared.body()

        # Chunked, no size given: refused once it passes the limit.
        chunked = await RawClient(api.port).connect()
        began = time.monotonic()
        await chunked.send(_head("Transfer-Encoding: chunked\r\n"))
        piece = b"[" + b"1," * (2**16 - 1)  # stays invalid JSON to the end
        sent = 0
        while sent <= MAX_BODY + 2**16 and chunked.status() is None:  # bounded by the limit
            if not await chunked.send(b"%x\r\n%s\r\n" % (len(piece), piece)):
                break
            sent += len(piece)
        report["chunked 413"] = await chunked.answered_within(began, 30)
        assert chunked.status() == 413, chunked.received[:300]

        for c in crowd:
            await c.closed_within(c.opened_at, TIMEOUT + SLACK)
            assert c.received == b"", c.received  # cut off, not answered
        for c in silent:
            await c.closed_within(c.opened_at, TIMEOUT + SLACK)
        sent_heads = [await t for t in trickles]
        assert max(sent_heads) < len(whole), sent_heads
        report["crowd closed after"] = max(c.closed_at or 0 for c in crowd) - min(
            c.opened_at for c in crowd
        )
        for c in (*crowd, *silent, slow_body, declared, chunked):
            c.close()
    finally:
        stop.set()
        await asyncio.wait_for(traffic, 30)  # re-raises a failed request
    async with ConfigClient(api.url, ADMIN_TOKEN) as c:
        names = {p["name"] for p in (await c.list_all("project"))[0]}
    assert names == set(good.created), names - set(good.created)
    assert len(good.created) >= 10, good.created
    assert good.slowest < 5.0, good.slowest
    print(f"served {len(good.created)} creates, slowest {good.slowest:.2f}s; {report}")


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("http", "message"),
    [
        ({"body_timeout": 0}, r"http\.body_timeout: must be between 0\.1 and 3600"),
        (
            {"max_connections": 10, "max_connections_per_source": 11},
            r"http\.max_connections_per_source: must be at most http\.max_connections \(10\)",
        ),
    ],
)
async def test_bad_http_settings_name_the_field(
    tmp_path: Path, http: dict[str, Any], message: str
) -> None:
    daemon = Daemon("vrstack.config.main", api_config(tmp_path, http), tmp_path, "api")
    with pytest.raises(RuntimeError, match=message):
        daemon.start()
    assert daemon.wait() == 2


HEALTH = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"


async def _served(port: int, source: str, attempts: int = 1) -> RawClient:
    """GET /health from `source`: 200, retried (bounded) while the connection is refused."""
    for _attempt in range(attempts):
        c = await RawClient(port, source=source).connect()
        await c.send(HEALTH)
        with contextlib.suppress(AssertionError):
            await c.answered_within(time.monotonic(), SLACK + 3)
            assert c.status() == 200, c.received
            return c
        c.close()
        await asyncio.sleep(0.1)
    raise AssertionError(f"{source} not served in {attempts} attempts")


@pytest.mark.asyncio
async def test_connection_limits_per_source_and_in_total(tmp_path: Path) -> None:
    per_source, total = 4, 10
    http = {"max_connections": total, "max_connections_per_source": per_source}
    with api_daemon(tmp_path, http) as api:
        good = GoodClient(api.url)
        stop = asyncio.Event()
        traffic = asyncio.ensure_future(good.run(stop))
        began = time.monotonic()
        opened: list[RawClient] = []
        try:
            # One source opens three times its cap: the rest are closed at once.
            flood = [await RawClient(api.port, source="127.0.0.2").connect() for _ in range(12)]
            opened += flood
            await wait_refused(flood, 12 - per_source, SLACK)
            await asyncio.sleep(0.5)  # a late close would show here
            kept = [c for c in flood if c.closed_at is None]
            assert len(kept) == per_source, len(kept)

            # Another source is served meanwhile (and the good client goes on).
            (await _served(api.port, "127.0.0.3")).close()
            stop.set()
            await asyncio.wait_for(traffic, 30)  # re-raises a failed request

            # The total: 4 + 4 open, so a third source gets 2 of its 4 (or 1 while the
            # good client's last connection is still counted).
            second = [await RawClient(api.port, source="127.0.0.3").connect() for _ in range(4)]
            opened += second
            third = [await RawClient(api.port, source="127.0.0.4").connect() for _ in range(4)]
            opened += third
            await wait_refused(third, 4 - (total - 2 * per_source), SLACK)
            await asyncio.sleep(0.5)
            assert not [c for c in second if c.closed_at is not None]

            # Closed connections free their places: the flooding source is served again.
            for c in kept:
                c.close()
            (await _served(api.port, "127.0.0.2", attempts=50)).close()
        finally:
            stop.set()
            for c in opened:
                c.close()
            await asyncio.wait_for(traffic, 30)
        took = time.monotonic() - began
        lines = [line for line in api.logs() if line.get("msg") == "connection refused"]

    assert len(good.created) >= 3, good.created
    assert good.slowest < 5.0, good.slowest
    # Each refusing source is named; the flood's 8 refusals make at most a line per 10 s.
    flood_lines = [line for line in lines if line.get("addr") == "127.0.0.2"]
    assert flood_lines and flood_lines[0]["reason"] == "max_connections_per_source", lines
    assert len(flood_lines) <= 1 + int(took // 10), flood_lines
    assert any(
        line.get("addr") == "127.0.0.4" and line["reason"] == "max_connections" for line in lines
    ), lines
    print(
        f"served {len(good.created)} creates meanwhile (slowest {good.slowest:.2f}s); "
        f"{len(lines)} refusal lines in {took:.1f}s: {lines}"
    )
