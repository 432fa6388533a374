"""The SDN's Keystone service user switched by SIGHUP, without a gap (issue 11).

The rotation (docs/security.md, "The SDN's Keystone user, without a gap") keeps two
service users: the standby one gets a new password, the APIs switch to it by a reload
(they read `auth.keystone` again), and only then does the old user's password change,
which makes Keystone revoke its tokens. Here: the reload's all-or-nothing swap, the
validator dropping the old user's token, and vrstack-api and vrstack-collector as real
processes switching users while a person's Keystone token is used every 20 ms, against a
fake Keystone (the neighbour; test_keystone_live.py runs the real one) that revokes a
user's tokens when its password changes, as Keystone does.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from test_token_rotation import Poller, hup, write_auth

from vrstack.config import auth, keystone
from vrstack.config.testing import Daemon
from vrstack.service.settings import ConfigError, Settings

ADMIN = "static-admin-" + "0" * 19
USER_A, USER_B = "vrstack-sdn", "vrstack-sdn-b"
PW_A, PW_B, PW_A2 = "pw-a-" + "1" * 27, "pw-b-" + "2" * 27, "pw-a-" + "3" * 27


class FakeKeystone:
    """The two Keystone v3 calls the SDN APIs make. A password change revokes every
    token of that user (keystone's identity/core.py update_user does the same)."""

    def __init__(self) -> None:
        self.passwords: dict[str, str] = {}
        self.tokens: dict[str, str] = {}  # token -> user
        self.validated_by: list[str] = []  # the service user of each validation
        self.logins: list[str] = []
        self.hold_logins: asyncio.Event | None = None  # set: logins go on
        self._runner: web.AppRunner | None = None
        self._n = 0

    def issue(self, user: str) -> str:
        self._n += 1
        token = f"gAAAA-{user}-{self._n:04d}-" + "x" * 40
        self.tokens[token] = user
        return token

    def set_password(self, user: str, password: str) -> None:
        self.passwords[user] = password
        self.tokens = {t: u for t, u in self.tokens.items() if u != user}

    def _body(self, user: str) -> dict[str, Any]:
        expires = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
        roles = [{"name": "admin"}] if user == "alice" else [{"name": "service"}]
        return {
            "token": {
                "expires_at": expires,
                "user": {"id": f"id-{user}", "name": user},
                "project": {"id": "p-1", "name": "service" if user != "alice" else "demo"},
                "roles": roles,
            }
        }

    async def _login(self, request: web.Request) -> web.Response:
        body = await request.json()
        if self.hold_logins is not None:
            await self.hold_logins.wait()
        user = body["auth"]["identity"]["password"]["user"]
        if self.passwords.get(user["name"]) != user["password"]:
            return web.json_response({"error": {"code": 401}}, status=401)
        self.logins.append(user["name"])
        token = self.issue(user["name"])
        return web.json_response(
            self._body(user["name"]), status=201, headers={"X-Subject-Token": token}
        )

    async def _validate(self, request: web.Request) -> web.Response:
        service = self.tokens.get(request.headers.get("X-Auth-Token", ""))
        if service is None:
            return web.json_response({"error": {"code": 401}}, status=401)
        self.validated_by.append(service)
        subject = self.tokens.get(request.headers.get("X-Subject-Token", ""))
        if subject is None:
            return web.json_response({"error": {"code": 404}}, status=404)
        return web.json_response(self._body(subject))

    async def start(self) -> str:
        app = web.Application()
        app.router.add_post("/v3/auth/tokens", self._login)
        app.router.add_get("/v3/auth/tokens", self._validate)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = self._runner.addresses[0][1]
        return f"http://127.0.0.1:{port}/v3"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()


def section(url: str, username: str, password: str | None) -> dict[str, Any]:
    ks: dict[str, Any] = {"url": url, "username": username, "cache_ttl": 0}
    if password is not None:
        ks["password"] = password
    return {"backend": "static", "admin_token": ADMIN, "keystone": ks}


def settings(auth_section: dict[str, Any]) -> Settings:
    return Settings("/etc/vrstack/api.yaml", {"auth": auth_section})


# ---- the reload, in process ---------------------------------------------------------------


def test_a_reload_swaps_the_service_user_and_keeps_cached_answers() -> None:
    url = "http://198.18.0.10:5000/v3"
    a = auth.from_settings(settings(section(url, USER_A, PW_A)))
    assert isinstance(a, auth.StaticThenKeystone)
    validator = a.keystone.validator
    validator._service_token, validator._service_until = "token-of-a", time.monotonic() + 600
    validator._cache["k"] = (time.monotonic() + 60, None)
    auth.reload_auth(a)(settings(section(url, USER_B, PW_B)))
    assert (a.keystone.ks.username, validator.s.password) == (USER_B, PW_B)
    assert validator._service_token == ""  # the next validation logs in as B
    assert "k" in validator._cache


BAD_RELOADS = [
    # (the new auth section, what the refusal names)
    (section("http://198.18.0.10:5000/v3", USER_B, None), "auth.keystone.password"),
    (section("keystone:5000", USER_B, PW_B), "auth.keystone.url"),
    ({"backend": "static", "admin_token": ADMIN}, "auth.keystone: added or removed"),
    ({**section("http://198.18.0.10:5000/v3", USER_B, PW_B), "admin_token": "short"}, "admin"),
]


@pytest.mark.parametrize(("new", "names"), BAD_RELOADS)
def test_a_bad_file_keeps_the_user_and_the_tokens(new: dict[str, Any], names: str) -> None:
    a = auth.from_settings(settings(section("http://198.18.0.10:5000/v3", USER_A, PW_A)))
    assert isinstance(a, auth.StaticThenKeystone)
    with pytest.raises(ConfigError, match=names) as caught:
        auth.reload_auth(a)(settings(new))
    assert (a.keystone.ks.username, a.keystone.validator.s.password) == (USER_A, PW_A)
    assert a.static.admin_tokens == (ADMIN,)
    assert PW_A not in str(caught.value) and PW_B not in str(caught.value)


def test_keystone_turned_on_by_a_reload_is_refused() -> None:
    static = auth.from_settings(settings({"backend": "static", "admin_token": ADMIN}))
    with pytest.raises(ConfigError, match="need a restart"):
        auth.reload_auth(static)(settings(section("http://198.18.0.10:5000/v3", USER_B, PW_B)))


@pytest.mark.asyncio
async def test_a_login_under_way_during_the_swap_serves_only_its_request() -> None:
    fake = FakeKeystone()
    url = await fake.start()
    fake.set_password(USER_A, PW_A)
    fake.set_password(USER_B, PW_B)
    alice = fake.issue("alice")
    v = keystone.TokenValidator(keystone.settings_from(settings(section(url, USER_A, PW_A))))
    fake.hold_logins = asyncio.Event()
    try:
        pending = asyncio.create_task(v.validate(alice))  # logs in as A, held by Keystone
        await asyncio.sleep(0.1)
        v.use(keystone.settings_from(settings(section(url, USER_B, PW_B))))
        fake.hold_logins.set()
        found = await pending
        assert found is not None and found.user == "alice"
        assert v._service_token == ""  # A's token served that request and was not kept
        assert await v.validate(fake.issue("alice")) is not None
        assert fake.logins == [USER_A, USER_B] and fake.validated_by == [USER_A, USER_B]
    finally:
        await v.close()
        await fake.stop()


# ---- vrstack-api and vrstack-collector as processes ---------------------------------------

DAEMONS = [
    # module, a GET an admin's Keystone token may make, the rest of its config
    ("vrstack.config.main", "/projects", {"store": {"backend": "sqlite", "path": "x.db"}}),
    (  # the collector asks the config API for a project's networks (not for an admin)
        "vrstack.analytics.main",
        "/status",
        {"store": {"path": "x.db"}, "config_api": {"url": "http://127.0.0.1:9"}},
    ),
]


async def daemon_with_user_a(
    tmp_path: Path, url: str, module: str = DAEMONS[0][0], extra: dict[str, Any] | None = None
) -> tuple[Daemon, dict[str, Any]]:
    config: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        **(extra or DAEMONS[0][2]),
        "auth": section(url, USER_A, PW_A),
        "log": {"level": "info"},
    }
    config["store"] = {**config["store"], "path": str(tmp_path / "x.db")}
    d = Daemon(module, config, tmp_path, "svc")
    await asyncio.to_thread(d.start)
    return d, config


@pytest.mark.asyncio
@pytest.mark.parametrize(("module", "path", "extra"), DAEMONS, ids=["api", "collector"])
async def test_the_apis_switch_users_by_sighup_with_no_failed_request(
    tmp_path: Path, module: str, path: str, extra: dict[str, Any]
) -> None:
    fake = FakeKeystone()
    url = await fake.start()
    fake.set_password(USER_A, PW_A)
    alice = fake.issue("alice")
    d, config = await daemon_with_user_a(tmp_path, url, module, extra)
    assert d.proc is not None
    pid = d.proc.pid
    poller = Poller(d.url, path, alice)
    polling = asyncio.create_task(poller.run())
    try:
        await asyncio.sleep(0.3)
        assert set(fake.validated_by) == {USER_A}
        # 1. the standby user gets its (new) password; 2. the API switches to it
        fake.set_password(USER_B, PW_B)
        write_auth(d, config, section(url, USER_B, PW_B))
        await asyncio.to_thread(hup, d)
        switched = len(fake.validated_by)
        # 3. only now the old user's password changes: Keystone revokes its tokens
        fake.set_password(USER_A, PW_A2)
        await asyncio.sleep(0.4)
        assert fake.validated_by[switched:] and set(fake.validated_by[switched:]) == {USER_B}
        # A file without the password is refused; the API keeps validating as B.
        write_auth(d, config, section(url, USER_B, None))
        await asyncio.to_thread(hup, d, "reload refused")
        await asyncio.sleep(0.2)
        assert fake.validated_by[-1] == USER_B
    finally:
        poller.stop.set()
        await polling
        rc = await asyncio.to_thread(d.terminate)
        await fake.stop()
    assert d.proc.pid == pid and rc == 0, "the daemon restarted or did not stop cleanly"
    assert poller.errors == [], f"connections failed: {poller.errors[:5]}"
    assert set(poller.answers) == {200} and sum(poller.answers.values()) > 30, poller.answers
    logged = d.log_path.read_text()
    assert not any(pw in logged for pw in (PW_A, PW_B, PW_A2))


@pytest.mark.asyncio
async def test_without_the_switch_a_password_change_leaves_a_gap(tmp_path: Path) -> None:
    """What the two users avoid: the API still on A when A's password changes cannot
    validate people's tokens (503) until it is restarted with the new password."""
    fake = FakeKeystone()
    url = await fake.start()
    fake.set_password(USER_A, PW_A)
    alice = fake.issue("alice")
    d, _config = await daemon_with_user_a(tmp_path, url)
    try:
        async with aiohttp.ClientSession() as session:
            headers = {"X-Auth-Token": alice}
            async with session.get(d.url + "/projects", headers=headers) as resp:
                assert resp.status == 200
            fake.set_password(USER_A, PW_A2)
            async with session.get(d.url + "/projects", headers=headers) as resp:
                assert resp.status == 503
    finally:
        await asyncio.to_thread(d.terminate)
        await fake.stop()
