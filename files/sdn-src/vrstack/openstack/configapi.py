"""A blocking client of the config API for code that runs inside OpenStack services.

Neutron's API workers and nova-compute call us synchronously and their virtualenv has
no aiohttp, so this is `vrstack.config.client.ConfigClient`'s interface over urllib:
same paths (from the one model), same `ApiError` shape (status, body, message).
An https:// API is checked against `ca_file` (the deployment CA; the system CAs when
empty) and the name or address in the URL.
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from ..config.model import RESOURCES
from ..service import tls

JSON = dict[str, Any]


class ApiError(Exception):
    """An error answer (status >= 400) or no answer (status 0) from the config API."""

    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body: JSON = body if isinstance(body, dict) else {"error": str(body)}
        self.field = self.body.get("field")
        self.error = str(self.body.get("error"))
        super().__init__(
            f"{method} {path}: HTTP {status}: {self.error}"
            + (f" (field {self.field})" if self.field else "")
        )


class SyncConfigClient:
    def __init__(self, url: str, token: str, timeout: float = 10.0, ca_file: str = "") -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ssl_context: ssl.SSLContext | None = None
        if self.url.startswith("https://"):  # a bad CA file fails here, naming it
            self.ssl_context = tls.client_context(tls.TlsFiles(ca=ca_file))

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        url = self.url + path
        if params:
            url += "?" + urllib.parse.urlencode(params)
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method)
        req.add_header("X-Auth-Token", self.token)
        req.add_header("Content-Type", "application/json")
        for key, value in (headers or {}).items():
            req.add_header(key, value)
        try:
            with urllib.request.urlopen(
                req, timeout=timeout or self.timeout, context=self.ssl_context
            ) as resp:
                raw = resp.read()
                return json.loads(raw) if raw else None
        except urllib.error.HTTPError as exc:
            raw = exc.read()
            try:
                err = json.loads(raw) if raw else {"error": exc.reason}
            except ValueError:
                err = {"error": raw.decode(errors="replace")[:200]}
            raise ApiError(exc.code, err, method, path) from None
        except (OSError, ValueError) as exc:
            # Refused, timed out, or not JSON: the API cannot have done anything useful.
            raise ApiError(
                0, {"error": f"config API at {self.url} unreachable: {exc}"}, method, path
            ) from None

    @staticmethod
    def _path(rtype: str, uid: str | None = None) -> str:
        plural = RESOURCES[rtype].plural
        return f"/{plural}/{uid}" if uid else f"/{plural}"

    def create(self, rtype: str, body: JSON) -> JSON:
        result: JSON = self.request("POST", self._path(rtype), body)
        return result

    def get(self, rtype: str, uid: str) -> JSON | None:
        try:
            result: JSON = self.request("GET", self._path(rtype, uid))
            return result
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def update(self, rtype: str, uid: str, body: JSON, version: int | None = None) -> JSON:
        headers = {"If-Match": f'"{version}"'} if version is not None else None
        result: JSON = self.request("PUT", self._path(rtype, uid), body, headers=headers)
        return result

    def delete(self, rtype: str, uid: str, version: int | None = None) -> bool:
        """Delete; False when it was already gone."""
        headers = {"If-Match": f'"{version}"'} if version is not None else None
        try:
            self.request("DELETE", self._path(rtype, uid), headers=headers)
        except ApiError as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def list_all(self, rtype: str, **filters: str) -> list[JSON]:
        return self.list_with_revision(rtype, **filters)[0]

    def list_with_revision(self, rtype: str, **filters: str) -> tuple[list[JSON], int]:
        """Every object of a type, and the store revision of the first page (a watch
        from there misses nothing)."""
        items: list[JSON] = []
        params: dict[str, Any] = {"limit": 1000, **filters}
        revision = None
        for _ in range(10000):  # bounded: 10 M objects
            page = self.request("GET", self._path(rtype), params=params)
            if revision is None:
                revision = int(page["revision"])
            items += page["items"]
            if not page["next"]:
                break
            params["cursor"] = page["next"]
        return items, revision or 0

    def watch(self, since: int, types: list[str], timeout: float = 25.0) -> tuple[list[JSON], int]:
        """Changes after `since` (a long poll of at most `timeout` s); (events, resume from)."""
        params = {"since": since, "timeout": timeout, "types": ",".join(types)}
        data = self.request("GET", "/watch", params=params, timeout=timeout + self.timeout)
        return data["events"], int(data["revision"])
