# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""A small client for the vrstack config API and the logic of the sdn_resource module.

`ensure()` makes one object (found by type and name) match the fields it is given:
create it, update only the fields that differ (with If-Match, retried when someone
else wrote in between), or delete it. The HTTP part is one `send` callable, so the
decisions are testable against a real `vrstack-api` or a recorded one.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from ansible_collections.vrstack.cloud.plugins.module_utils import api_client

# (method, path with query, JSON body or None, extra headers) -> (status, headers, body)
Send = Callable[[str, str, Any, dict], tuple[int, dict, Any]]

# Fields the API owns; never compared, never sent as the caller's.
READ_ONLY = frozenset(
    ("uuid", "type", "fq_name", "parent_type", "version", "created_at", "updated_at")
)
_TYPE = re.compile(r"^[a-z][a-z-]*[a-z]$")
RETRIES = 3


class ApiError(api_client.Failure):
    """A request the API refused, or an API that cannot be reached."""


def open_url_sender(
    base_url: str,
    token: str,
    timeout: float = 10.0,
    validate_certs: bool = True,
    ca_path: str | None = None,
) -> Send:
    """A `send` over the modules' HTTP client (module_utils/api_client.py)."""

    def send(method: str, path: str, body: Any, headers: dict) -> tuple[int, dict, Any]:
        url = base_url.rstrip("/") + path
        hdrs = {"X-Auth-Token": token, **headers}
        try:
            status, rhdrs, raw = api_client.request(
                url, method, body, hdrs, timeout, validate_certs, ca_path
            )
        except api_client.Unreachable as exc:
            raise ApiError(f"cannot reach the config API at {base_url}: {exc}") from None
        return status, rhdrs, api_client.parsed(raw)

    return send


def _error(method: str, path: str, status: int, body: Any) -> ApiError:
    msg = body.get("error") if isinstance(body, dict) else None
    fld = body.get("field", "") if isinstance(body, dict) else ""
    where = f" (field {fld})" if fld else ""
    return ApiError(f"{method} {path}: {status}: {msg or body}{where}", status, fld or "")


@dataclass
class Request:
    rtype: str
    name: str
    fields: dict[str, Any] = field(default_factory=dict)
    state: str = "present"
    parent_uuid: str | None = None
    check_mode: bool = False


@dataclass
class Outcome:
    changed: bool = False
    action: str = "none"  # none, create, update, delete
    uuid: str | None = None
    object: dict[str, Any] | None = None
    changed_fields: list[str] = field(default_factory=list)
    before: dict[str, Any] = field(default_factory=dict)
    after: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "changed": self.changed,
            "action": self.action,
            "uuid": self.uuid,
            "object": self.object,
            "changed_fields": self.changed_fields,
            "diff": {"before": self.before, "after": self.after},
        }


def differing(current: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """The wanted fields whose value the object does not have (compared as JSON)."""
    return sorted(
        k
        for k, v in wanted.items()
        if json.dumps(current.get(k), sort_keys=True) != json.dumps(v, sort_keys=True)
    )


class Api:
    def __init__(self, send: Send) -> None:
        self.send = send

    def call(self, method: str, path: str, body: Any = None, headers: dict | None = None) -> Any:
        status, _hdrs, data = self.send(method, path, body, headers or {})
        if status >= 400:
            raise _error(method, path, status, data)
        return data

    def find(self, rtype: str, name: str, parent_uuid: str | None) -> dict[str, Any] | None:
        query = {"name": name}
        if parent_uuid:
            query["parent_uuid"] = parent_uuid
        items = self.call("GET", f"/{rtype}s?{urlencode(query)}")["items"]
        return items[0] if items else None

    def ensure(self, req: Request) -> Outcome:
        if not _TYPE.match(req.rtype):
            raise ApiError(f"type: not a resource type name: {req.rtype!r}", field_name="type")
        bad = sorted(set(req.fields) & (READ_ONLY | {"name", "parent_uuid"}))
        if bad:
            raise ApiError(
                f"fields: {', '.join(bad)} cannot be set (given by the API or by name/parent_uuid)",
                field_name="fields",
            )
        for _attempt in range(RETRIES):
            try:
                return self._ensure_once(req)
            except ApiError as exc:
                if exc.status != 412:  # someone else wrote in between: read again
                    raise
        raise ApiError(f"{req.rtype} {req.name}: kept changing under us ({RETRIES} attempts)")

    def _ensure_once(self, req: Request) -> Outcome:
        path = f"/{req.rtype}s"
        current = self.find(req.rtype, req.name, req.parent_uuid)
        if req.state == "absent":
            if current is None:
                return Outcome()
            out = Outcome(True, "delete", current["uuid"], None, before=_shown(current, {}))
            if not req.check_mode:
                self.call(
                    "DELETE",
                    f"{path}/{current['uuid']}",
                    headers={"If-Match": f'"{current["version"]}"'},
                )
            return out
        if current is None:
            body: dict[str, Any] = {"name": req.name, **req.fields}
            if req.parent_uuid:
                body["parent_uuid"] = req.parent_uuid
            out = Outcome(True, "create", None, None, sorted(req.fields), {}, dict(req.fields))
            if not req.check_mode:
                out.object = self.call("POST", path, body)
                out.uuid = out.object["uuid"]
                _check_stored(req, out.object)
            return out
        changed = differing(current, req.fields)
        out = Outcome(bool(changed), "update" if changed else "none", current["uuid"], current)
        out.changed_fields = changed
        out.before = {k: current.get(k) for k in changed}
        out.after = {k: req.fields[k] for k in changed}
        if changed and not req.check_mode:
            # PUT replaces the object's fields: send what it has with ours on top.
            body = {k: v for k, v in current.items() if k not in READ_ONLY}
            body.update(req.fields)
            out.object = self.call(
                "PUT",
                f"{path}/{current['uuid']}",
                body,
                headers={"If-Match": f'"{current["version"]}"'},
            )
            _check_stored(req, out.object)
        return out


def _shown(obj: dict[str, Any], _wanted: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if k not in READ_ONLY}


def _check_stored(req: Request, stored: dict[str, Any]) -> None:
    """A value the API normalises differently would be 'changed' on every run: say so."""
    off = differing(stored, req.fields)
    if off:
        shown = ", ".join(f"{k}={json.dumps(stored.get(k))}" for k in off)
        raise ApiError(
            f"{req.rtype} {req.name}: the API stores {shown}; give the fields in that form "
            "so that later runs see no change",
            field_name="fields." + off[0],
        )
