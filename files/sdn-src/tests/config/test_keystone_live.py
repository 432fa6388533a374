"""The config API with Keystone tokens (`auth.backend: keystone`, or static tokens and an
`auth.keystone` section at once) against a real Keystone.

Keystone (from requirements/openstack/constraints.txt) runs under gunicorn on a loopback
port with SQLite and fernet tokens in a temp directory, from the OpenStack virtualenv that
scripts/openstack-venv.sh builds once (cached under /var/cache/vrstack, locked).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from vrstack.config.keystone import KeystoneSettings, TokenValidator
from vrstack.config.testing import Daemon

REPO = Path(__file__).resolve().parents[4]
BUILD_TIMEOUT = 1800.0  # seconds: a cold pip install from PyPI, on a busy machine
ADMIN_PASSWORD = "bootstrap-admin-pw-0001"
PASSWORD = "user-pw-0001"


# ---- the virtualenv -------------------------------------------------------------------


def build_venv() -> Path:
    """The OpenStack venv the deploy and the integration tests share (cached, locked)."""
    try:
        done = subprocess.run(
            [str(REPO / "scripts" / "openstack-venv.sh")],
            capture_output=True,
            text=True,
            timeout=BUILD_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"scripts/openstack-venv.sh took over {BUILD_TIMEOUT:.0f}s")
    if done.returncode != 0:
        pytest.fail(
            "scripts/openstack-venv.sh failed: " + " | ".join(done.stderr.splitlines()[-5:])
        )
    return Path(done.stdout.strip().splitlines()[-1])


# ---- Keystone under gunicorn ----------------------------------------------------------


def http(
    method: str, url: str, token: str = "", body: Any = None, subject: str = ""
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """(status, JSON body, headers) of one Keystone request."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["X-Auth-Token"] = token
    if subject:
        headers["X-Subject-Token"] = subject
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            text = resp.read()
            return resp.status, json.loads(text) if text else {}, dict(resp.headers)
    except urllib.error.HTTPError as exc:
        text = exc.read()
        return exc.code, json.loads(text) if text else {}, dict(exc.headers)


class Keystone:
    """keystone-manage db_sync/fernet_setup/bootstrap in `work`, then gunicorn on loopback."""

    def __init__(self, venv: Path, work: Path) -> None:
        self.venv = venv
        self.work = work
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None
        self.conf = work / "keystone.conf"
        self.env = {**os.environ, "OS_KEYSTONE_CONFIG_FILES": str(self.conf)}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v3"

    def setup(self) -> None:
        for d in ("fernet-keys", "receipt-keys"):
            (self.work / d).mkdir(mode=0o700)
        # bcrypt's fewest rounds: password logins are most of this test's Keystone time.
        self.conf.write_text(
            "[DEFAULT]\nuse_stderr = true\n"
            f"[database]\nconnection = sqlite:///{self.work}/keystone.db\n"
            "[identity]\npassword_hash_rounds = 4\n"
            "[token]\nprovider = fernet\nexpiration = 3600\n"
            f"[fernet_tokens]\nkey_repository = {self.work}/fernet-keys\n"
            f"[fernet_receipts]\nkey_repository = {self.work}/receipt-keys\n"
        )
        user = ["--keystone-user", str(os.getuid()), "--keystone-group", str(os.getgid())]
        for args in (
            ["db_sync"],
            ["fernet_setup", *user],
            ["bootstrap", "--bootstrap-password", ADMIN_PASSWORD],
        ):
            cmd = [str(self.venv / "bin" / "keystone-manage"), "--config-file", str(self.conf)]
            done = subprocess.run(
                cmd + args, capture_output=True, text=True, timeout=300, env=self.env
            )
            assert done.returncode == 0, f"keystone-manage {args[0]}: {done.stderr[-2000:]}"

    def start(self) -> None:
        """Serve on a socket bound here (the same port after a restart) and handed over."""
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", self.port))
        sock.listen(64)
        self.port = sock.getsockname()[1]
        # gunicorn reads ./gunicorn.conf.py: keystone's oslo.config parses sys.argv in the
        # worker and would reject gunicorn's own command-line options.
        (self.work / "gunicorn.conf.py").write_text(
            'wsgi_app = "keystone.wsgi.api:application"\n'
            f'bind = ["fd://{sock.fileno()}"]\n'
            "workers = 1\ntimeout = 60\ncontrol_socket_disable = True\n"
        )
        log = open(self.work / "gunicorn.log", "ab")  # noqa: SIM115 - the child keeps it
        try:
            self.proc = subprocess.Popen(
                [str(self.venv / "bin" / "gunicorn")],
                cwd=self.work,
                env=self.env,
                stdout=log,
                stderr=log,
                pass_fds=[sock.fileno()],
            )
        finally:
            sock.close()  # gunicorn holds it now: when gunicorn stops, connections fail
            log.close()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError):
                if http("GET", self.url)[0] == 200:
                    return
            assert self.proc.poll() is None, (self.work / "gunicorn.log").read_text()[-3000:]
            time.sleep(0.3)
        raise AssertionError(f"keystone did not answer: {(self.work / 'gunicorn.log').read_text()}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    # ---- the identity API --------------------------------------------------------------

    def token(self, user: str, password: str, project: str | None = None) -> str:
        body: dict[str, Any] = {
            "auth": {
                "identity": {
                    "methods": ["password"],
                    "password": {
                        "user": {"name": user, "domain": {"id": "default"}, "password": password}
                    },
                }
            }
        }
        if project:
            body["auth"]["scope"] = {"project": {"name": project, "domain": {"id": "default"}}}
        status, data, headers = http("POST", self.url + "/auth/tokens", body=body)
        assert status == 201, (status, data)
        return headers["X-Subject-Token"]

    def create(self, admin: str, kind: str, body: dict[str, Any]) -> str:
        status, data, _ = http("POST", f"{self.url}/{kind}s", admin, {kind: body})
        assert status == 201, (status, data)
        return str(data[kind]["id"])

    def role_id(self, admin: str, name: str) -> str:
        status, data, _ = http("GET", f"{self.url}/roles?name={name}", admin)
        assert status == 200 and data["roles"], (status, data)
        return str(data["roles"][0]["id"])

    def grant(self, admin: str, project: str, user: str, role: str) -> None:
        url = f"{self.url}/projects/{project}/users/{user}/roles/{self.role_id(admin, role)}"
        assert http("PUT", url, admin)[0] == 204

    def revoke(self, admin: str, token: str) -> None:
        assert http("DELETE", self.url + "/auth/tokens", admin, subject=token)[0] == 204


@dataclass
class Lab:
    keystone: Keystone
    admin: str  # the bootstrap admin's token
    demo: str  # the demo project's id
    other: str  # another tenant's project id


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    venv = build_venv()
    ks = Keystone(venv, tmp_path_factory.mktemp("keystone"))
    ks.setup()
    ks.start()
    try:
        admin = ks.token("admin", ADMIN_PASSWORD, "admin")
        service = ks.create(admin, "project", {"name": "service", "domain_id": "default"})
        demo = ks.create(admin, "project", {"name": "demo", "domain_id": "default"})
        other = ks.create(admin, "project", {"name": "other", "domain_id": "default"})
        for name, project, role in (
            ("vrstack-api", service, "service"),  # the config API's own user
            ("ada", demo, "admin"),
            ("max", demo, "member"),
            ("rita", demo, "reader"),
            ("olga", other, "member"),
            ("nobody", "", ""),
        ):
            user = ks.create(
                admin, "user", {"name": name, "domain_id": "default", "password": PASSWORD}
            )
            if role:
                ks.grant(admin, project, user, role)
        yield Lab(ks, admin, demo, other)
    finally:
        ks.stop()


def api_config(lab: Lab, tmp_path: Path, **keystone: Any) -> dict[str, Any]:
    return {
        "store": {"backend": "sqlite", "path": str(tmp_path / "config.db")},
        "listen": {"host": "127.0.0.1", "port": 0},
        "auth": {
            "backend": "keystone",
            "keystone": {
                "url": lab.keystone.url.removesuffix("/v3"),
                "username": "vrstack-api",
                "password": PASSWORD,
                **keystone,
            },
        },
    }


async def call(
    s: aiohttp.ClientSession, method: str, url: str, token: str | None, body: Any = None
) -> tuple[int, Any]:
    headers = {"X-Auth-Token": token} if token is not None else {}
    async with s.request(method, url, json=body, headers=headers) as resp:
        return resp.status, await resp.json()


# ---- the config API daemon with auth.backend: keystone --------------------------------


@pytest.mark.asyncio
async def test_config_api_with_keystone(lab: Lab, tmp_path: Path) -> None:
    ks = lab.keystone
    ada = ks.token("ada", PASSWORD, "demo")
    max_ = ks.token("max", PASSWORD, "demo")
    rita = ks.token("rita", PASSWORD, "demo")
    nobody = ks.token("nobody", PASSWORD)  # valid, unscoped: no role anywhere
    revoked = ks.token("rita", PASSWORD, "demo")
    ks.revoke(lab.admin, revoked)
    daemon = Daemon("vrstack.config.main", api_config(lab, tmp_path, cache_ttl=1), tmp_path, "api")
    daemon.start()
    try:
        async with aiohttp.ClientSession() as s:
            projects = daemon.url + "/projects"
            status, body = await call(s, "POST", projects, ada, {"name": "blue"})
            assert status == 201, body
            status, body = await call(s, "POST", projects, rita, {"name": "red"})
            assert status == 403 and "rita may only read" in body["error"], body
            status, body = await call(s, "POST", projects, max_, {"name": "red"})
            assert status == 403 and "max may only read" in body["error"], body
            # rita reads only her Keystone project's part, and blue is nobody's.
            status, body = await call(s, "GET", projects, rita)
            assert status == 200 and body["items"] == [], body
            assert (await call(s, "GET", projects, max_))[0] == 200
            status, body = await call(s, "GET", projects, nobody)
            assert status == 403 and "none of the roles" in body["error"], body
            for token in (None, "", "not-a-token", ada[:-4] + "AAAA", revoked, "x" * 5000):
                status, body = await call(s, "GET", projects, token)
                assert status == 401, (token, status, body)
            # A token revoked after use is refused once its cached validation expires.
            ada2 = ks.token("ada", PASSWORD, "demo")
            assert (await call(s, "GET", projects, ada2))[0] == 200
            ks.revoke(lab.admin, ada2)
            await asyncio.sleep(1.5)  # cache_ttl: 1
            assert (await call(s, "GET", projects, ada2))[0] == 401
            # Nothing the refused requests sent was written.
            assert [p["name"] for p in (await call(s, "GET", projects, ada))[1]["items"]] == [
                "blue"
            ]

            # Keystone down: a token it has not vouched for gets 503, never 200 or 401.
            fresh = ks.token("ada", PASSWORD, "demo")
            ks.stop()
            try:
                status, body = await call(s, "POST", projects, fresh, {"name": "green"})
                assert status == 503, body
                assert "cannot check the token" in body["error"], body
                assert "127.0.0.1" in body["error"], body
                await asyncio.sleep(1.5)  # ada's cached validation has expired too
                assert (await call(s, "GET", projects, ada))[0] == 503
                assert (await call(s, "GET", daemon.url + "/health", None))[0] == 200
            finally:
                ks.start()
            status, body = await call(s, "POST", projects, fresh, {"name": "green"})
            assert status == 201, body  # back without restarting the API
            logs = list(daemon.logs())
            down = [x for x in logs if x["msg"] == "keystone unavailable"]
            assert down and down[0]["level"] == "warning"
            assert any(x["msg"] == "keystone reachable again" for x in logs)
            assert not any(fresh in json.dumps(x) or ada in json.dumps(x) for x in logs)
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


@pytest.mark.asyncio
async def test_read_only_tokens_see_only_their_project(lab: Lab, tmp_path: Path) -> None:
    """Config projects A and B belong to Keystone projects demo and other: demo's reader
    and member see A's objects only, other's member B's only; fabric objects and the
    watch feed are refused; no write from them or from anonymous callers changes a
    thing."""
    ks = lab.keystone
    ada = ks.token("ada", PASSWORD, "demo")
    tokens = {
        "rita": ks.token("rita", PASSWORD, "demo"),
        "max": ks.token("max", PASSWORD, "demo"),
        "olga": ks.token("olga", PASSWORD, "other"),
    }
    daemon = Daemon("vrstack.config.main", api_config(lab, tmp_path), tmp_path, "api")
    daemon.start()
    try:
        async with aiohttp.ClientSession() as s:
            url = daemon.url

            async def make(kind: str, body: dict[str, Any]) -> dict[str, Any]:
                status, obj = await call(s, "POST", f"{url}/{kind}", ada, body)
                assert status == 201, obj
                return dict(obj)

            a = await make("projects", {"name": "a", "keystone_id": lab.demo})
            b = await make("projects", {"name": "b", "keystone_id": lab.other})
            net = {
                p["name"]: await make(
                    "virtual-networks",
                    {
                        "name": f"net-{p['name']}",
                        "parent_uuid": p["uuid"],
                        "subnets": [{"cidr": f"198.18.{i}.0/24"}],
                    },
                )
                for i, p in ((10, a), (11, b))
            }
            await make("virtual-routers", {"name": "compute1", "fabric_address": "198.18.2.11"})

            async def snapshot() -> list[Any]:
                out = []
                for kind in ("projects", "virtual-networks", "virtual-routers"):
                    status, body = await call(s, "GET", f"{url}/{kind}", ada)
                    assert status == 200
                    out.append(sorted((o["uuid"], o["version"]) for o in body["items"]))
                return out

            before = await snapshot()
            mine = {"rita": "a", "max": "a", "olga": "b"}
            for who, token in tokens.items():
                own, theirs = mine[who], "b" if mine[who] == "a" else "a"
                status, body = await call(s, "GET", f"{url}/projects", token)
                assert status == 200 and [p["name"] for p in body["items"]] == [own], (who, body)
                status, body = await call(s, "GET", f"{url}/virtual-networks", token)
                assert [n["name"] for n in body["items"]] == [f"net-{own}"], (who, body)
                status, _ = await call(
                    s, "GET", f"{url}/virtual-networks/{net[own]['uuid']}", token
                )
                assert status == 200, who
                other_net = f"{url}/virtual-networks/{net[theirs]['uuid']}"
                status, body = await call(s, "GET", other_net, token)
                assert status == 404, (who, status, body)
                # Asking for the other project's children by parent: nothing.
                query = f"{url}/virtual-networks?parent_uuid={net[theirs]['parent_uuid']}"
                assert (await call(s, "GET", query, token))[1]["items"] == [], who
                for path in ("/virtual-routers", "/watch?since=0&timeout=0"):
                    status, body = await call(s, "GET", url + path, token)
                    assert status == 403, (who, path, status, body)
                # Writes: their own project's objects and the other's, all refused.
                for method, target, body in (
                    ("PUT", f"{url}/virtual-networks/{net[own]['uuid']}", {"description": "x"}),
                    ("PUT", other_net, {"description": "x"}),
                    ("DELETE", other_net, None),
                    ("POST", f"{url}/virtual-networks", {"name": "n", "parent_uuid": a["uuid"]}),
                ):
                    status, answer = await call(s, method, target, token, body)
                    assert status == 403 and "may only read" in answer["error"], (who, method)
            for token in (None, "not-a-token"):
                for method, target in (("GET", f"{url}/projects"), ("DELETE", other_net)):
                    assert (await call(s, method, target, token))[0] == 401
            assert await snapshot() == before  # nothing changed
            # The admin still sees both projects' networks.
            status, body = await call(s, "GET", f"{url}/virtual-networks", ada)
            assert sorted(n["name"] for n in body["items"]) == ["net-a", "net-b"]
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


# ---- static tokens and Keystone at once (what the roles deploy) -----------------------

STATIC = {"admin_token": "s-admin-" + "0" * 24, "reader_token": "s-reader-" + "0" * 23}


def both_config(lab: Lab, tmp_path: Path, **keystone: Any) -> dict[str, Any]:
    """`auth.backend: static` with an `auth.keystone` section."""
    data = api_config(lab, tmp_path, **keystone)
    data["auth"].update(backend="static", **STATIC)
    return data


@pytest.mark.asyncio
async def test_static_tokens_and_keystone_tokens_together(lab: Lab, tmp_path: Path) -> None:
    """The services' static admin token writes, and so does a Keystone admin's; a Keystone
    member reads only its project's objects; a bad token is 401, a token without a role
    403; with Keystone down its tokens get 503 while the static ones still work."""
    ks = lab.keystone
    ada = ks.token("ada", PASSWORD, "demo")
    max_ = ks.token("max", PASSWORD, "demo")
    olga = ks.token("olga", PASSWORD, "other")
    nobody = ks.token("nobody", PASSWORD)
    admin, reader = STATIC["admin_token"], STATIC["reader_token"]
    daemon = Daemon("vrstack.config.main", both_config(lab, tmp_path, cache_ttl=0), tmp_path, "api")
    daemon.start()
    try:
        async with aiohttp.ClientSession() as s:
            url = daemon.url
            status, a = await call(
                s, "POST", f"{url}/projects", admin, {"name": "a", "keystone_id": lab.demo}
            )
            assert status == 201, a
            status, b = await call(
                s, "POST", f"{url}/projects", ada, {"name": "b", "keystone_id": lab.other}
            )
            assert status == 201, b  # a Keystone admin token writes too
            for p, cidr in ((a, "198.18.20.0/24"), (b, "198.18.21.0/24")):
                body = {
                    "name": f"net-{p['name']}",
                    "parent_uuid": p["uuid"],
                    "subnets": [{"cidr": cidr}],
                }
                assert (await call(s, "POST", f"{url}/virtual-networks", admin, body))[0] == 201
            for token, seen in (
                (max_, ["net-a"]),
                (olga, ["net-b"]),
                (admin, ["net-a", "net-b"]),
                (reader, ["net-a", "net-b"]),
                (ada, ["net-a", "net-b"]),
            ):
                status, body = await call(s, "GET", f"{url}/virtual-networks", token)
                assert status == 200 and sorted(n["name"] for n in body["items"]) == seen, body
            for token, who in ((max_, "max"), (reader, "reader")):
                status, body = await call(s, "POST", f"{url}/projects", token, {"name": "x"})
                assert status == 403 and f"{who} may only read" in body["error"], body
            status, body = await call(s, "GET", f"{url}/projects", nobody)
            assert status == 403 and "none of the roles" in body["error"], body
            for token in (None, "not-a-token", ada[:-4] + "AAAA", admin[:-1]):
                assert (await call(s, "GET", f"{url}/projects", token))[0] == 401, token

            ks.stop()
            try:
                status, body = await call(s, "GET", f"{url}/projects", max_)
                assert status == 503 and "cannot check the token" in body["error"], body
                status, body = await call(s, "POST", f"{url}/projects", admin, {"name": "c"})
                assert status == 201, body  # the services never wait for Keystone
                assert (await call(s, "GET", f"{url}/projects", reader))[0] == 200
            finally:
                ks.start()
            assert (await call(s, "GET", f"{url}/projects", max_))[0] == 200
            logs = json.dumps(list(daemon.logs()))
            assert admin not in logs and ada not in logs and max_ not in logs
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


# ---- the validator: cache, role and project, service token ----------------------------


def settings(lab: Lab, **kw: Any) -> KeystoneSettings:
    return KeystoneSettings(url=lab.keystone.url, username="vrstack-api", password=PASSWORD, **kw)


@pytest.mark.asyncio
async def test_validation_keeps_project_and_roles_and_is_cached(lab: Lab) -> None:
    ks = lab.keystone
    v = TokenValidator(settings(lab, cache_ttl=60, cache_size=2))
    try:
        ada, max_, rita = (ks.token(u, PASSWORD, "demo") for u in ("ada", "max", "rita"))
        found = await v.validate(ada)
        assert found is not None and found.user == "ada" and found.project == "demo"
        assert found.project_id == lab.demo and "admin" in found.roles
        # Concurrent requests with one token: one Keystone call.
        results = await asyncio.gather(*(v.validate(max_) for _ in range(20)))
        assert {r.user if r else None for r in results} == {"max"}
        assert v.counters["validations"] == 2 and v.counters["service_tokens"] == 1
        assert await v.validate(ada) == found  # a hit
        assert v.counters["validations"] == 2 and v.counters["cache_hits"] >= 1
        # Bounded: a third token evicts the least recently used (max).
        assert (await v.validate(rita)) is not None
        assert v.counters["validations"] == 3
        await v.validate(max_)
        assert v.counters["validations"] == 4
        assert await v.validate("garbage") is None
        assert await v.validate("garbage") is None  # an invalid token is cached too
        assert v.counters["validations"] == 5
        assert await v.validate("x" * 5000) is None  # longer than any token: not sent
        assert v.counters["validations"] == 5
    finally:
        await v.close()


@pytest.mark.asyncio
async def test_service_token_renewed_when_keystone_refuses_it(lab: Lab) -> None:
    ks = lab.keystone
    v = TokenValidator(settings(lab, cache_ttl=0))
    try:
        ada = ks.token("ada", PASSWORD, "demo")
        assert await v.validate(ada) is not None
        assert v.counters["service_tokens"] == 1
        ks.revoke(lab.admin, v._service_token)  # as if it expired early
        assert await v.validate(ada) is not None  # 401, new service token, retried
        assert v.counters["service_tokens"] == 2 and v.counters["validations"] == 3
    finally:
        await v.close()


@pytest.mark.asyncio
async def test_wrong_service_password_or_role_is_503_with_the_reason(lab: Lab) -> None:
    ks = lab.keystone
    ada = ks.token("ada", PASSWORD, "demo")
    v = TokenValidator(KeystoneSettings(url=ks.url, username="vrstack-api", password="wrong"))
    try:
        with pytest.raises(Exception, match="refused the service user vrstack-api"):
            await v.validate(ada)
    finally:
        await v.close()
    # A user without the service (or admin) role may not validate others' tokens.
    v = TokenValidator(
        KeystoneSettings(url=ks.url, username="rita", password=PASSWORD, project="demo")
    )
    try:
        with pytest.raises(Exception, match="does not let rita validate tokens"):
            await v.validate(ada)
    finally:
        await v.close()
