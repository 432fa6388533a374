"""Static tokens rotated without a gap: several tokens per role, read again on SIGHUP.

The rotation (docs/security.md, "Rotating secrets"): (a) the servers accept new and old,
(b) the clients switch to the new one, (c) the servers drop the old. Here: the settings
parsing (data-driven), the authenticator, and vrstack-api and vrstack-collector as real
processes taken through the three steps by SIGHUP while a client keeps asking; the
clients' side (ConfigClient, Sender) swapping the token on an open session.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import make_mocked_request

from vrstack.analytics.sender import Sender
from vrstack.config import auth
from vrstack.config.client import ConfigClient, new_api_token
from vrstack.config.testing import Daemon
from vrstack.service.daemon import add_reload, reload
from vrstack.service.settings import ConfigError, Settings

OLD = "old-admin-" + "0" * 22
NEW = "new-admin-" + "1" * 22
READER = "reader-tok-" + "2" * 21
AGENT = "agent-toke-" + "3" * 21
NEITHER = "not-a-token-" + "4" * 20


def settings(section: dict[str, Any]) -> Settings:
    return Settings("/etc/vrstack/api.yaml", {"auth": section})


# ---- parsing -----------------------------------------------------------------------------

GOOD = [
    # (auth section, admin tokens, reader tokens, agent tokens)
    ({"admin_token": OLD}, (OLD,), (), ()),
    ({"admin_tokens": [NEW, OLD]}, (NEW, OLD), (), ()),
    ({"admin_token": NEW, "admin_tokens": [NEW, OLD]}, (NEW, OLD), (), ()),
    ({"admin_token": OLD, "reader_tokens": f"{READER}, {AGENT}"}, (OLD,), (READER, AGENT), ()),
    ({"admin_token": OLD, "reader_token": "", "agent_tokens": [AGENT]}, (OLD,), (), (AGENT,)),
]


@pytest.mark.parametrize(("section", "admin", "reader", "agent"), GOOD)
def test_tokens_per_role_from_settings(
    section: dict[str, Any],
    admin: tuple[str, ...],
    reader: tuple[str, ...],
    agent: tuple[str, ...],
) -> None:
    got = auth.static_from(settings(section))
    assert (got.admin_tokens, got.reader_tokens, got.agent_tokens) == (admin, reader, agent)


BAD = [
    ({}, "auth.admin_token: is required"),
    ({"admin_tokens": []}, "auth.admin_token: is required"),
    ({"admin_tokens": [NEW, "short"]}, "auth.admin_token: must be at least 16"),
    ({"admin_tokens": {"a": NEW}}, "auth.admin_tokens: must be a list of strings"),
    ({"admin_token": 12345678901234567890}, "auth.admin_token: must be a string"),
    ({"admin_tokens": [NEW, OLD], "reader_tokens": [OLD]}, "auth.reader_token: must differ"),
    ({"admin_token": NEW, "reader_token": READER, "agent_tokens": [READER]}, "auth.agent_token"),
]


@pytest.mark.parametrize(("section", "message"), BAD)
def test_bad_token_settings_are_refused_without_showing_a_value(
    section: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as caught:
        auth.static_from(settings(section))
    for value in (OLD, NEW, READER, AGENT):
        assert value not in str(caught.value)


# ---- the authenticator -------------------------------------------------------------------


def who(tokens: auth.StaticTokens, token: str | None) -> str | None:
    headers = {"X-Auth-Token": token} if token else {}
    found = asyncio.run(tokens.authenticate(make_mocked_request("GET", "/", headers=headers)))
    return None if found is None else found.name


def test_old_token_accepted_during_the_overlap_and_refused_after() -> None:
    tokens = auth.StaticTokens(OLD, READER, AGENT)
    assert [who(tokens, t) for t in (OLD, NEW)] == ["admin", None]
    tokens.replace(auth.static_from(settings({"admin_tokens": [NEW, OLD], "reader_token": READER})))
    assert [who(tokens, t) for t in (NEW, OLD, READER, NEITHER, None)] == [
        "admin",
        "admin",
        "reader",
        None,
        None,
    ]
    assert who(tokens, AGENT) is None  # the new file has no agent token: it is gone too
    tokens.replace(auth.static_from(settings({"admin_token": NEW, "reader_token": READER})))
    assert [who(tokens, t) for t in (NEW, OLD, READER)] == ["admin", None, "reader"]


def test_a_bad_file_on_reload_keeps_the_tokens_in_force() -> None:
    tokens = auth.StaticTokens(OLD)
    apply = auth.reload_auth(tokens)
    with pytest.raises(ConfigError):
        apply(settings({"admin_tokens": [NEW, "short"]}))
    assert (who(tokens, OLD), who(tokens, NEW)) == ("admin", None)


# ---- the daemons as processes ------------------------------------------------------------


def write_auth(d: Daemon, config: dict[str, Any], section: dict[str, Any]) -> None:
    config["auth"] = {"backend": "static", **section}
    tmp = d.config_path.with_suffix(".new")
    tmp.write_text(json.dumps(config))
    tmp.replace(d.config_path)  # a reader sees the old file or the new one


def hup(d: Daemon, event: str = "reloaded", timeout: float = 10.0) -> None:
    """SIGHUP, then wait for the daemon to log that it read the file (`event`'s msg)."""
    assert d.proc is not None
    before = sum(1 for line in d.logs() if line.get("msg") == event)
    os.kill(d.proc.pid, signal.SIGHUP)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if sum(1 for line in d.logs() if line.get("msg") == event) > before:
            return
        assert d.proc.poll() is None, f"the daemon exited on SIGHUP: {d.log_path.read_text()}"
        time.sleep(0.02)
    raise AssertionError(f"no {event!r} in the log after SIGHUP")


class Poller:
    """Asks `path` with whatever token `current` holds, every 20 ms, until stopped."""

    def __init__(self, url: str, path: str, token: str) -> None:
        self.url, self.path, self.current = url, path, token
        self.answers: dict[int, int] = {}
        self.errors: list[str] = []
        self.stop = asyncio.Event()

    async def run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while not self.stop.is_set():
                try:
                    async with session.get(
                        self.url + self.path, headers={"X-Auth-Token": self.current}
                    ) as resp:
                        self.answers[resp.status] = self.answers.get(resp.status, 0) + 1
                except (aiohttp.ClientError, OSError) as exc:  # refused, reset
                    self.errors.append(type(exc).__name__)
                await asyncio.sleep(0.02)


async def status(url: str, path: str, token: str | None) -> int:
    headers = {"X-Auth-Token": token} if token else {}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url + path, headers=headers) as resp,
    ):
        return resp.status


DAEMONS = [
    # module, a GET that needs a token, its store section
    ("vrstack.config.main", "/projects", {"backend": "sqlite", "path": "x.db"}),
    ("vrstack.analytics.main", "/status", {"path": "x.db"}),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("module", "path", "store"), DAEMONS, ids=["api", "collector"])
async def test_the_three_steps_by_sighup_with_no_failed_request(
    tmp_path: Path, module: str, path: str, store: dict[str, str]
) -> None:
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {**store, "path": str(tmp_path / store["path"])},
        "auth": {"backend": "static", "admin_token": OLD, "reader_token": READER},
        "log": {"level": "info"},
    }
    d = Daemon(module, config, tmp_path, "svc")
    d.start()
    assert d.proc is not None
    pid = d.proc.pid
    poller = Poller(d.url, path, OLD)
    polling = asyncio.create_task(poller.run())
    try:
        await asyncio.sleep(0.2)
        # (a) the server accepts new and old
        write_auth(d, config, {"admin_tokens": [NEW, OLD], "reader_token": READER})
        await asyncio.to_thread(hup, d)
        assert [await status(d.url, path, t) for t in (OLD, NEW, READER)] == [200, 200, 200]
        assert await status(d.url, path, NEITHER) == 401
        assert await status(d.url, path, None) == 401
        # (b) the client switches
        poller.current = NEW
        await asyncio.sleep(0.2)
        # (c) the old one goes
        write_auth(d, config, {"admin_token": NEW, "reader_token": READER})
        await asyncio.to_thread(hup, d)
        assert [await status(d.url, path, t) for t in (OLD, NEW)] == [401, 200]
        # A file with a bad token is refused and changes nothing.
        write_auth(d, config, {"admin_tokens": [NEW, "short"]})
        await asyncio.to_thread(hup, d, "reload refused")
        assert [await status(d.url, path, t) for t in (OLD, NEW)] == [401, 200]
        await asyncio.sleep(0.2)
    finally:
        poller.stop.set()
        await polling
        rc = d.terminate()
    assert d.proc.pid == pid and rc == 0, "the daemon restarted or did not stop cleanly"
    assert poller.errors == [], f"connections failed: {poller.errors[:5]}"
    assert set(poller.answers) == {200} and sum(poller.answers.values()) > 20, poller.answers
    assert not any(OLD in json.dumps(line) or NEW in json.dumps(line) for line in d.logs())


# ---- the clients -------------------------------------------------------------------------


async def _echo_app() -> tuple[web.AppRunner, str, list[str]]:
    seen: list[str] = []

    async def handler(request: web.Request) -> web.Response:
        seen.append(request.headers.get("X-Auth-Token", ""))
        if request.method == "POST":
            lines = (await request.read()).splitlines()
            return web.json_response({"accepted": len(lines), "duplicates": 0})
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return runner, f"http://127.0.0.1:{port}", seen


@pytest.mark.asyncio
async def test_a_client_sends_the_reloaded_token_on_its_open_session() -> None:
    runner, url, seen = await _echo_app()
    try:
        async with ConfigClient(url, OLD) as client:
            await client.request("GET", "/projects")
            apply = new_api_token(client, "api.token")
            with pytest.raises(ConfigError, match=r"api\.token: is empty"):
                apply(Settings("x.yaml", {"api": {"token": ""}}))
            await client.request("GET", "/projects")
            apply(Settings("x.yaml", {"api": {"token": NEW}}))
            await client.request("GET", "/projects", headers={"X-Trace": "1"})
            # A caller's own token (the collector passes people's) still wins.
            await client.request("GET", "/projects", headers={"X-Auth-Token": READER})
    finally:
        await runner.cleanup()
    assert seen == [OLD, OLD, NEW, READER]


@pytest.mark.asyncio
async def test_the_sender_uses_a_new_token_for_its_next_batch() -> None:
    runner, url, seen = await _echo_app()
    sender = Sender(url, "compute1", OLD, flush_interval=0.05)
    stop = asyncio.Event()
    task = asyncio.create_task(sender.run(stop))
    try:
        sender.emit("log", msg="one")
        assert await sender.flushed(5)
        sender.token = NEW
        sender.emit("log", msg="two")
        assert await sender.flushed(5)
    finally:
        stop.set()
        await task
        await runner.cleanup()
    assert seen == [OLD, NEW]


@pytest.mark.asyncio
async def test_the_schema_transformer_switches_by_sighup_and_keeps_working(
    tmp_path: Path,
) -> None:
    """A client daemon through the three steps: after (c) it still writes with its token."""
    api_conf: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {"backend": "sqlite", "path": str(tmp_path / "config.db")},
        "auth": {"backend": "static", "admin_token": OLD},
    }
    api = Daemon("vrstack.config.main", api_conf, tmp_path, "api")
    api.start()
    schema: Daemon | None = None
    try:
        schema_conf: dict[str, Any] = {
            "api": {"url": api.url, "token": OLD},
            "listen": {"host": "127.0.0.1", "port": 0},
        }
        schema = Daemon("vrstack.schema.main", schema_conf, tmp_path, "schema")
        schema.start()
        assert schema.proc is not None
        pid = schema.proc.pid
        write_auth(api, api_conf, {"admin_tokens": [OLD, NEW]})  # (a)
        await asyncio.to_thread(hup, api)
        schema_conf["api"]["token"] = NEW  # (b)
        schema.config_path.write_text(json.dumps(schema_conf))
        await asyncio.to_thread(hup, schema)
        write_auth(api, api_conf, {"admin_token": NEW})  # (c)
        await asyncio.to_thread(hup, api)
        async with ConfigClient(api.url, NEW) as c:
            await c.create("global-config", {"name": "default", "asn": 64512})
            project = await c.create("project", {"name": "demo"})
            net = await c.create("virtual-network", {"name": "n", "parent_uuid": project["uuid"]})
            deadline = time.monotonic() + 20
            ris: list[dict[str, Any]] = []
            while not ris and time.monotonic() < deadline:
                ris, _rev = await c.list_all("routing-instance", parent_uuid=net["uuid"])
                await asyncio.sleep(0.1)
        assert ris, f"nothing derived after the switch: {schema.log_path.read_text()[-2000:]}"
        assert schema.proc.pid == pid and schema.proc.poll() is None
    finally:
        if schema is not None:
            assert schema.terminate() == 0
        assert api.terminate() == 0


def test_sighup_without_anything_to_reload_keeps_the_daemon(tmp_path: Path) -> None:
    app = web.Application()
    assert reload(app, "test") is True  # and the daemon goes on (serve always handles it)
    seen: list[str] = []
    path = tmp_path / "x.yaml"
    path.write_text(json.dumps({"api": {"token": NEW}}))
    add_reload(app, str(path), lambda s: seen.append(s.get_str("api.token")))
    assert reload(app, "test") is True and seen == [NEW]
    path.write_text("{not yaml")
    assert reload(app, "test") is False and seen == [NEW]
