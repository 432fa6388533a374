# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of vrstack.cloud.keystone_register: a service's project, catalog entry,
endpoints, user and role assignments through Keystone's v3 API with plain HTTP (issue 7:
openstacksdk's import alone took 1-3 s a call on a small controller). The admin
credentials come from the clouds.yaml the keystone role writes."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import quote, urlencode

from ansible_collections.vrstack.cloud.plugins.module_utils import api_client

INTERFACES = ("public", "internal", "admin")

# (method, url, body, headers) -> (status, headers, raw body); api_client.request by default.
Send = Callable[[str, str, Any, dict[str, str]], tuple[int, dict[str, str], bytes]]


class KeystoneError(Exception):
    """Keystone refused a request or cannot be reached, or holds something unexpected."""


def parse_clouds(text: str) -> dict[str, Any]:
    """clouds.yaml as a dict: PyYAML where the host's Python has it, else the block
    mappings of plain scalars that the keystone role's template writes (the module runs
    with the system Python, which may lack PyYAML, so that check mode on a fresh host
    needs no virtualenv)."""
    try:
        import yaml
    except ImportError:
        yaml = None
    if yaml is not None:
        data = yaml.safe_load(text)
        return data if isinstance(data, dict) else {}
    root: dict[str, Any] = {}
    stack: list[tuple[int, dict[str, Any]]] = [(-1, root)]
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(line.lstrip(" "))
        key, sep, value = stripped.partition(":")
        if not sep or (value and not value.startswith(" ")):
            raise ValueError(f"line {number}: not 'key: value'")
        while indent <= stack[-1][0]:
            stack.pop()
        parent = stack[-1][1]
        value = value.strip()
        if not value:
            child: dict[str, Any] = {}
            parent[key] = child
            stack.append((indent, child))
        elif len(value) > 1 and value[0] == value[-1] and value[0] in "'\"":
            parent[key] = value[1:-1]
        else:
            parent[key] = value
    return root


def cloud_settings(text: str, cloud: str) -> dict[str, Any]:
    """The auth settings of `cloud`, with the names the requests below use."""
    try:
        clouds = parse_clouds(text).get("clouds")
    except ValueError as exc:
        raise KeystoneError(f"cannot read it: {exc}") from None
    entry = clouds.get(cloud) if isinstance(clouds, dict) else None
    if not isinstance(entry, dict) or not isinstance(entry.get("auth"), dict):
        raise KeystoneError(f"no cloud {cloud} with an auth section")
    auth = entry["auth"]
    missing = [k for k in ("auth_url", "username", "password", "project_name") if k not in auth]
    if missing:
        raise KeystoneError(f"cloud {cloud} has no auth.{', auth.'.join(missing)}")
    url = str(auth["auth_url"]).rstrip("/")
    return {
        "url": url if url.endswith("/v3") else url + "/v3",
        "username": str(auth["username"]),
        "password": str(auth["password"]),
        "project": str(auth["project_name"]),
        "user_domain": str(auth.get("user_domain_name", "Default")),
        "project_domain": str(auth.get("project_domain_name", "Default")),
        "cacert": str(entry.get("cacert") or ""),
    }


def password_auth(
    user: str,
    password: str,
    user_domain: dict[str, str],
    project: str,
    project_domain: dict[str, str],
) -> dict[str, Any]:
    """A project-scoped password authentication request."""
    return {
        "auth": {
            "identity": {
                "methods": ["password"],
                "password": {"user": {"name": user, "domain": user_domain, "password": password}},
            },
            "scope": {"project": {"name": project, "domain": project_domain}},
        }
    }


def settings_auth(settings: dict[str, Any]) -> dict[str, Any]:
    """The login request for the user and project of cloud_settings()."""
    return password_auth(
        settings["username"],
        settings["password"],
        {"name": settings["user_domain"]},
        settings["project"],
        {"name": settings["project_domain"]},
    )


class Keystone:
    """One admin token and the requests the registration makes."""

    def __init__(self, settings: dict[str, Any], send: Send | None = None) -> None:
        self.url = settings["url"]
        self.cacert = settings["cacert"]
        self._send = send or self._http
        self.token = ""
        body = settings_auth(settings)
        status, headers, raw = self._send("POST", self.url + "/auth/tokens", body, {})
        if status != 201:
            raise KeystoneError(f"admin login as {settings['username']}: {describe(status, raw)}")
        token = {k.lower(): v for k, v in headers.items()}.get("x-subject-token", "")
        if not token:
            raise KeystoneError("admin login: no X-Subject-Token in the answer")
        self.token = token

    def _http(
        self, method: str, url: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        try:
            return api_client.request(
                url, method=method, body=body, headers=headers, ca_path=self.cacert or None
            )
        except api_client.Unreachable as exc:
            raise KeystoneError(f"{method} {url}: no answer: {exc}") from None

    def raw(self, method: str, path: str, body: Any = None) -> tuple[int, bytes]:
        status, _headers, raw = self._send(
            method, self.url + path, body, {"X-Auth-Token": self.token}
        )
        return status, raw

    def call(self, method: str, path: str, body: Any = None, ok: tuple[int, ...] = (200,)) -> Any:
        status, raw = self.raw(method, path, body)
        if status not in ok:
            raise KeystoneError(f"{method} {path.split('?')[0]}: {describe(status, raw)}")
        return api_client.parsed(raw)

    def list(self, collection: str, **query: str) -> list[dict[str, Any]]:
        path = "/" + collection + ("?" + urlencode(query) if query else "")
        return list((self.call("GET", path) or {}).get(collection, []))

    def password_works(self, user: str, password: str, project: str, domain_id: str) -> bool:
        body = password_auth(user, password, {"id": domain_id}, project, {"id": domain_id})
        status, _headers, raw = self._send("POST", self.url + "/auth/tokens", body, {})
        if status == 201:
            return True
        if status == 401:
            return False
        raise KeystoneError(f"login as {user}: {describe(status, raw)}")


def describe(status: int, raw: bytes) -> str:
    """HTTP status and Keystone's own message (its error body), if any."""
    body = api_client.parsed(raw)
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return f"HTTP {status}: {body['error'].get('message', '')}"
    return f"HTTP {status}" + (f": {str(body)[:200]}" if body else "")


def find_domain(ks: Keystone, domain: str) -> str:
    """A domain's id, by id or by name (as openstacksdk's find_domain)."""
    status, raw = ks.raw("GET", f"/domains/{quote(domain, safe='')}")
    if status == 200:
        return str(json.loads(raw)["domain"]["id"])
    found = ks.list("domains", name=domain)
    if not found:
        raise KeystoneError(f"no domain {domain}")
    return str(found[0]["id"])


def register(ks: Keystone, p: dict[str, Any], check: bool, actions: list[str]) -> dict[str, Any]:
    """Make Keystone hold what p asks for; the actions (also appended to `actions` as they
    are made, for the error report), the diff and the service's id. check: only reads."""
    diff: dict[str, Any] = {"before": {}, "after": {}}
    result: dict[str, Any] = {"actions": actions, "diff": diff}
    domain_id = find_domain(ks, p["domain"])
    found = ks.list("projects", name=p["project"], domain_id=domain_id)
    project_id = str(found[0]["id"]) if found else ""
    if not found:
        actions.append(f"create project {p['project']}")
        if not check:
            body = {
                "project": {
                    "name": p["project"],
                    "domain_id": domain_id,
                    "description": p["project_description"],
                }
            }
            project_id = str(ks.call("POST", "/projects", body, ok=(201,))["project"]["id"])
    if p["service"]:
        result["service_id"] = ensure_service(ks, p, check, actions, diff)
    if p["user"]:
        ensure_user(ks, p, check, domain_id, project_id, actions, diff)
    return result


def ensure_service(
    ks: Keystone, p: dict[str, Any], check: bool, actions: list[str], diff: dict[str, Any]
) -> str:
    want = p["service"]
    found = [s for s in ks.list("services") if s.get("name") == want["name"]]
    if len(found) > 1:
        raise KeystoneError(
            f"keystone has {len(found)} services named {want['name']}; remove the extra ones"
        )
    service = found[0] if found else None
    if service is not None and service.get("type") != want["type"]:
        raise KeystoneError(
            f"keystone service {want['name']} has type {service.get('type')}, the role asks for {want['type']}"
        )
    if service is None:
        actions.append(f"create service {want['name']} ({want['type']})")
        if check:
            return ""
        body = {
            "service": {
                "name": want["name"],
                "type": want["type"],
                "description": want.get("description") or want["name"],
                "enabled": True,
            }
        }
        service = ks.call("POST", "/services", body, ok=(201,))["service"]
    service_id = str(service["id"])
    before: dict[str, str] = {}
    after: dict[str, str] = {}
    for ep in ks.list("endpoints", service_id=service_id):
        interface = ep.get("interface")
        if ep.get("region_id", ep.get("region")) != p["region"] or interface not in p["endpoints"]:
            continue
        before[interface] = ep["url"]
        url = p["endpoints"][interface]
        after[interface] = url
        if ep["url"] != url:
            actions.append(f"update endpoint {want['name']} {interface} {ep['url']} -> {url}")
            if not check:
                ks.call("PATCH", f"/endpoints/{ep['id']}", {"endpoint": {"url": url}})
    for interface, url in p["endpoints"].items():
        if interface in after:
            continue
        after[interface] = url
        actions.append(f"create endpoint {want['name']} {interface} {url}")
        if not check:
            body = {
                "endpoint": {
                    "service_id": service_id,
                    "interface": interface,
                    "url": url,
                    "region_id": p["region"],
                    "enabled": True,
                }
            }
            ks.call("POST", "/endpoints", body, ok=(201,))
    diff["before"]["endpoints"], diff["after"]["endpoints"] = before, after
    return service_id


def ensure_user(
    ks: Keystone,
    p: dict[str, Any],
    check: bool,
    domain_id: str,
    project_id: str,
    actions: list[str],
    diff: dict[str, Any],
) -> None:
    found = ks.list("users", name=p["user"], domain_id=domain_id)
    if not found:
        actions.append(f"create user {p['user']}")
        if check:
            diff["after"]["roles"] = sorted(p["roles"])
            return
        body: dict[str, Any] = {
            "name": p["user"],
            "domain_id": domain_id,
            "password": p["password"],
            "enabled": True,
        }
        if project_id:
            body["default_project_id"] = project_id
        user_id = str(ks.call("POST", "/users", {"user": body}, ok=(201,))["user"]["id"])
    else:
        user_id = str(found[0]["id"])
        # A rotated password in the secrets file is applied; an unchanged one is no change.
        if project_id and not ks.password_works(p["user"], p["password"], p["project"], domain_id):
            actions.append(f"set password of user {p['user']}")
            if not check:
                ks.call("PATCH", f"/users/{user_id}", {"user": {"password": p["password"]}})
    have: set[str] = set()
    if project_id:
        query = urlencode(
            {"user.id": user_id, "scope.project.id": project_id, "include_names": "true"}
        )
        for a in (ks.call("GET", "/role_assignments?" + query) or {}).get("role_assignments", []):
            have.add(a["role"]["name"])
    diff["before"]["roles"] = sorted(have)
    diff["after"]["roles"] = sorted(have | set(p["roles"]))
    for name in sorted(set(p["roles"]) - have):
        roles = ks.list("roles", name=name)
        if not roles:
            raise KeystoneError(f"keystone has no role {name} (field roles of user {p['user']})")
        actions.append(f"give user {p['user']} role {name} in project {p['project']}")
        if not check:
            ks.call(
                "PUT", f"/projects/{project_id}/users/{user_id}/roles/{roles[0]['id']}", ok=(204,)
            )
