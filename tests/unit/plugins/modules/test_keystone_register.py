"""vrstack.cloud.keystone_register against a fake Keystone v3 (the requests the module
makes, answered from memory as Keystone would): what a first run creates, that a second
run changes nothing, check mode, an endpoint moved, a rotated password, the errors; and
main() as Ansible runs it, over HTTP on loopback."""

from __future__ import annotations

import http.server
import json
import re
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml
from test_module_main import run as run_module

from ansible_collections.vrstack.cloud.plugins.module_utils.keystone_api import (
    Keystone,
    KeystoneError,
    cloud_settings,
    parse_clouds,
    register,
)

ROOT = Path(__file__).resolve().parents[4]
URL = "https://198.18.1.16:5000/v3"
SETTINGS = {
    "url": URL,
    "username": "admin",
    "password": "adminpw",
    "project": "admin",
    "user_domain": "Default",
    "project_domain": "Default",
    "cacert": "",
}
CLOUDS = """# managed
clouds:
  vrstack-admin:
    auth:
      auth_url: https://198.18.1.16:5000/v3
      username: admin
      password: adminpw
      project_name: admin
      user_domain_name: Default
      project_domain_name: Default
    region_name: RegionOne
    interface: internal
    identity_api_version: 3
    cacert: /etc/vrstack/pki/ca.crt
"""


class FakeKeystone:
    """Keystone's state and the answers to the module's requests; `writes` lists every
    request that would change it."""

    def __init__(self) -> None:
        self.domains = [{"id": "default", "name": "Default"}]
        self.projects = [{"id": "p-admin", "name": "admin", "domain_id": "default"}]
        self.services: list[dict[str, Any]] = []
        self.endpoints: list[dict[str, Any]] = []
        self.users = [
            {"id": "u-admin", "name": "admin", "domain_id": "default", "password": "adminpw"}
        ]
        self.roles = [{"id": "r-admin", "name": "admin"}, {"id": "r-service", "name": "service"}]
        self.assignments: set[tuple[str, str, str]] = set()
        self.writes: list[str] = []
        self.serial = 0

    def new_id(self, kind: str) -> str:
        self.serial += 1
        return f"{kind}-{self.serial}"

    def send(
        self, method: str, url: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        parts = urlsplit(url)
        assert url.startswith(URL + "/"), url
        path = parts.path[len(urlsplit(URL).path) :]
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if path == "/auth/tokens" and method == "POST":
            return self.login(body)
        if headers.get("X-Auth-Token") != "admin-token":
            return (
                401,
                {},
                b'{"error": {"message": "The request you have made requires authentication."}}',
            )
        if method != "GET":
            self.writes.append(f"{method} {path}")
        status, answer = self.route(method, path, query, body)
        return status, {}, json.dumps(answer).encode() if answer is not None else b""

    def login(self, body: Any) -> tuple[int, dict[str, str], bytes]:
        ident = body["auth"]["identity"]["password"]["user"]
        for user in self.users:
            if user["name"] == ident["name"] and user["password"] == ident["password"]:
                token = "admin-token" if user["name"] == "admin" else "user-token"
                return 201, {"X-Subject-Token": token}, b"{}"
        return (
            401,
            {},
            b'{"error": {"message": "The request you have made requires authentication."}}',
        )

    def route(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any]:
        def match(items: list[dict[str, Any]], **keys: str) -> list[dict[str, Any]]:
            return [
                i for i in items if all(i.get(k) == v for k, v in keys.items() if v is not None)
            ]

        if m := re.fullmatch(r"/domains/([^/]+)", path):
            found = match(self.domains, id=m.group(1))
            return (200, {"domain": found[0]}) if found else (404, {"error": {"message": "no"}})
        if path == "/domains":
            return 200, {"domains": match(self.domains, name=query.get("name"))}
        if path == "/projects" and method == "GET":
            return 200, {
                "projects": match(
                    self.projects, name=query.get("name"), domain_id=query.get("domain_id")
                )
            }
        if path == "/projects" and method == "POST":
            project = {**body["project"], "id": self.new_id("p")}
            self.projects.append(project)
            return 201, {"project": project}
        if path == "/services" and method == "GET":
            return 200, {"services": self.services}
        if path == "/services" and method == "POST":
            service = {**body["service"], "id": self.new_id("s")}
            self.services.append(service)
            return 201, {"service": service}
        if path == "/endpoints" and method == "GET":
            return 200, {"endpoints": match(self.endpoints, service_id=query.get("service_id"))}
        if path == "/endpoints" and method == "POST":
            endpoint = {**body["endpoint"], "id": self.new_id("e")}
            self.endpoints.append(endpoint)
            return 201, {"endpoint": endpoint}
        if (m := re.fullmatch(r"/endpoints/([^/]+)", path)) and method == "PATCH":
            (endpoint,) = match(self.endpoints, id=m.group(1))
            endpoint.update(body["endpoint"])
            return 200, {"endpoint": endpoint}
        if path == "/users" and method == "GET":
            found = match(self.users, name=query.get("name"), domain_id=query.get("domain_id"))
            return 200, {"users": [{k: v for k, v in u.items() if k != "password"} for u in found]}
        if path == "/users" and method == "POST":
            user = {**body["user"], "id": self.new_id("u")}
            self.users.append(user)
            return 201, {"user": user}
        if (m := re.fullmatch(r"/users/([^/]+)", path)) and method == "PATCH":
            (user,) = match(self.users, id=m.group(1))
            user.update(body["user"])
            return 200, {"user": {"id": user["id"]}}
        if path == "/role_assignments":
            names = {r["id"]: r["name"] for r in self.roles}
            found = [
                {"role": {"id": r, "name": names[r]}}
                for (u, p, r) in sorted(self.assignments)
                if u == query["user.id"] and p == query["scope.project.id"]
            ]
            assert query.get("include_names") == "true"
            return 200, {"role_assignments": found}
        if path == "/roles":
            return 200, {"roles": match(self.roles, name=query.get("name"))}
        if (
            m := re.fullmatch(r"/projects/([^/]+)/users/([^/]+)/roles/([^/]+)", path)
        ) and method == "PUT":
            self.assignments.add((m.group(2), m.group(1), m.group(3)))
            return 204, None
        raise AssertionError(f"unexpected request {method} {path}")


def params(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "region": "RegionOne",
        "project": "service",
        "project_description": "Service users of the OpenStack services",
        "domain": "default",
        "service": {"name": "glance", "type": "image", "description": "OpenStack Image"},
        "endpoints": dict.fromkeys(("public", "internal", "admin"), "https://198.18.1.16:9292"),
        "user": "glance",
        "password": "glancepw",
        "roles": ["admin", "service"],
    }
    return {**base, **over}


def run(fake: FakeKeystone, check: bool = False, **over: Any) -> dict[str, Any]:
    actions: list[str] = []
    result = register(Keystone(SETTINGS, send=fake.send), params(**over), check, actions)
    assert result["actions"] is actions
    return result


def test_first_run_creates_everything_and_second_changes_nothing() -> None:
    fake = FakeKeystone()
    first = run(fake)
    assert first["actions"] == [
        "create project service",
        "create service glance (image)",
        "create endpoint glance public https://198.18.1.16:9292",
        "create endpoint glance internal https://198.18.1.16:9292",
        "create endpoint glance admin https://198.18.1.16:9292",
        "create user glance",
        "give user glance role admin in project service",
        "give user glance role service in project service",
    ]
    (service,) = fake.services
    assert first["service_id"] == service["id"]
    assert sorted((e["interface"], e["region_id"]) for e in fake.endpoints) == [
        ("admin", "RegionOne"),
        ("internal", "RegionOne"),
        ("public", "RegionOne"),
    ]
    glance = next(u for u in fake.users if u["name"] == "glance")
    assert glance["password"] == "glancepw"
    assert len(fake.assignments) == 2
    fake.writes.clear()
    second = run(fake)
    assert second["actions"] == []
    assert fake.writes == []
    assert second["diff"]["before"] == second["diff"]["after"]


def test_check_mode_reports_and_writes_nothing() -> None:
    fake = FakeKeystone()
    result = run(fake, check=True)
    assert fake.writes == []
    assert result["service_id"] == ""
    assert "create user glance" in result["actions"]
    assert result["diff"]["after"]["roles"] == ["admin", "service"]


def test_moved_endpoint_is_updated_and_the_diff_shows_it() -> None:
    fake = FakeKeystone()
    run(fake)
    fake.writes.clear()
    moved = dict.fromkeys(("public", "internal", "admin"), "https://198.18.1.16:9292")
    moved["public"] = "https://198.18.9.9:9292"
    result = run(fake, endpoints=moved)
    assert result["actions"] == [
        "update endpoint glance public https://198.18.1.16:9292 -> https://198.18.9.9:9292"
    ]
    assert [w.split("/")[1] for w in fake.writes] == ["endpoints"]
    assert result["diff"]["before"]["endpoints"]["public"] == "https://198.18.1.16:9292"
    assert result["diff"]["after"]["endpoints"]["public"] == "https://198.18.9.9:9292"
    # Another region's endpoint is not this one.
    other = FakeKeystone()
    run(other)
    other.writes.clear()
    assert run(other, region="RegionTwo")["actions"][0].startswith("create endpoint glance public")


def test_rotated_password_is_set_again() -> None:
    fake = FakeKeystone()
    run(fake)
    fake.writes.clear()
    result = run(fake, password="rotated")
    assert result["actions"] == ["set password of user glance"]
    assert next(u for u in fake.users if u["name"] == "glance")["password"] == "rotated"
    assert run(fake, password="rotated")["actions"] == []


def test_missing_role_assignment_only() -> None:
    fake = FakeKeystone()
    run(fake, roles=["service"])
    result = run(fake)
    assert result["actions"] == ["give user glance role admin in project service"]
    assert result["diff"]["before"]["roles"] == ["service"]


@pytest.mark.parametrize(
    ("prepare", "over", "message"),
    [
        (
            lambda f: f.services.extend([{"id": "a", "name": "glance", "type": "image"}] * 2),
            {},
            "keystone has 2 services named glance; remove the extra ones",
        ),
        (
            lambda f: f.services.append({"id": "a", "name": "glance", "type": "volume"}),
            {},
            "keystone service glance has type volume, the role asks for image",
        ),
        (
            lambda f: None,
            {"roles": ["member"]},
            "keystone has no role member (field roles of user glance)",
        ),
        (lambda f: None, {"domain": "nowhere"}, "no domain nowhere"),
    ],
)
def test_errors(prepare: Any, over: dict[str, Any], message: str) -> None:
    fake = FakeKeystone()
    prepare(fake)
    with pytest.raises(KeystoneError) as exc:
        run(fake, **over)
    assert str(exc.value) == message


def test_admin_login_refused() -> None:
    fake = FakeKeystone()
    with pytest.raises(
        KeystoneError, match=r"^admin login as admin: HTTP 401: The request you have made"
    ):
        Keystone({**SETTINGS, "password": "wrong"}, send=fake.send)


def test_clouds_yaml_without_pyyaml_reads_as_pyyaml(monkeypatch: pytest.MonkeyPatch) -> None:
    with_yaml = parse_clouds(CLOUDS)
    monkeypatch.setitem(sys.modules, "yaml", None)  # import yaml raises ImportError
    without = parse_clouds(CLOUDS)
    assert without == json.loads(json.dumps(with_yaml), parse_int=str)
    settings = cloud_settings(CLOUDS, "vrstack-admin")
    assert settings["url"] == URL
    assert settings["cacert"] == "/etc/vrstack/pki/ca.crt"
    with pytest.raises(KeystoneError, match=r"^no cloud other with an auth section$"):
        cloud_settings(CLOUDS, "other")
    with pytest.raises(KeystoneError, match=r"^cannot read it: line 2: not 'key: value'$"):
        cloud_settings("clouds:\n  - a\n", "x")


def test_auth_url_without_version_gets_v3() -> None:
    text = CLOUDS.replace("5000/v3", "5000/")
    assert cloud_settings(text, "vrstack-admin")["url"] == URL


# main() as Ansible runs it, against the fake over HTTP on loopback.


@pytest.fixture
def http_keystone() -> Iterator[tuple[str, FakeKeystone]]:
    fake = FakeKeystone()

    class Handler(http.server.BaseHTTPRequestHandler):
        def answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length)) if length else None
            url = URL + self.path[len("/v3") :]
            status, headers, raw = fake.send(self.command, url, body, dict(self.headers.items()))
            self.send_response(status)
            for key, value in headers.items():
                self.send_header(key, value)
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        do_GET = do_POST = do_PATCH = do_PUT = answer

        def log_message(self, *args: Any) -> None:
            del args

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v3", fake
    server.shutdown()
    server.server_close()


def test_main(tmp_path: Path, http_keystone: tuple[str, FakeKeystone]) -> None:
    url, fake = http_keystone
    clouds = tmp_path / "clouds.yaml"
    text = yaml.safe_load(CLOUDS)
    text["clouds"]["vrstack-admin"]["auth"]["auth_url"] = url
    del text["clouds"]["vrstack-admin"]["cacert"]
    clouds.write_text(yaml.safe_dump(text))
    args = {
        "clouds_yaml": str(clouds),
        "service": {"name": "glance", "type": "image"},
        "url": "https://198.18.1.16:9292",
        "endpoints": {"admin": "https://198.18.1.17:9292"},
        "user": "glance",
        "password": "glancepw",
    }
    rc, result = run_module(tmp_path, "keystone_register", args, check=True, diff=True)
    assert rc == 0 and result["changed"] and fake.writes == [], result
    assert result["diff"]["after"]["roles"] == ["admin", "service"]
    rc, result = run_module(tmp_path, "keystone_register", args)
    assert rc == 0 and result["changed"], result
    assert "glancepw" not in json.dumps(result)
    assert sorted((e["interface"], e["url"]) for e in fake.endpoints) == [
        ("admin", "https://198.18.1.17:9292"),
        ("internal", "https://198.18.1.16:9292"),
        ("public", "https://198.18.1.16:9292"),
    ]
    rc, result = run_module(tmp_path, "keystone_register", args)
    assert rc == 0 and not result["changed"] and result["actions"] == [], result
    # No clouds.yaml yet (check mode before keystone): skipped, as the entry point's stat did.
    rc, result = run_module(
        tmp_path,
        "keystone_register",
        {**args, "clouds_yaml": str(tmp_path / "none.yaml")},
        check=True,
    )
    assert rc == 0 and result.get("skipped") and not result["changed"], result
    # Errors name the cloud.
    rc, result = run_module(tmp_path, "keystone_register", {**args, "cloud": "other"})
    assert rc == 1
    assert result["msg"] == f"keystone (cloud other): {clouds}: no cloud other with an auth section"
    rc, result = run_module(tmp_path, "keystone_register", {**args, "endpoints": {"private": "x"}})
    assert rc == 1 and result["msg"] == "endpoints: private is not one of public, internal, admin"


def test_clouds_not_a_mapping() -> None:
    with pytest.raises(KeystoneError, match=r"^no cloud x with an auth section$"):
        cloud_settings("clouds:\n  - a\n", "x")
