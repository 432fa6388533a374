# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""One HTTP client for the vrstack APIs the modules talk to (the config API, the
analytics query API, the agent's introspect API), over Ansible's open_url so that
proxies and certificates work as in every other module.

An HTTP error status is an answer (the caller reads the API's error body); no answer
at all raises Unreachable, which the caller words with where to look.
"""

from __future__ import annotations

import json
from typing import Any


class Failure(Exception):
    """What a module reports when an API refused a request or cannot be reached:
    the HTTP status (0: no answer) and the request's part the API named, if any."""

    def __init__(self, message: str, status: int = 0, field_name: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field_name = field_name


class Unreachable(Exception):
    """No HTTP answer (refused, timed out, name not found); the text is the reason."""


def request(
    url: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 10.0,
    validate_certs: bool = True,
    ca_path: str | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and raw body of one request; `body` is sent as JSON. An https URL's
    certificate is checked against `ca_path` (the deployment CA) when given."""
    from http.client import HTTPConnection, HTTPException
    from urllib.error import HTTPError, URLError
    from urllib.parse import urlsplit

    from ansible.module_utils.urls import open_url  # only where Ansible is present

    hdrs = {"Accept": "application/json", **(headers or {})}
    data = None
    if body is not None:
        data = json.dumps(body)
        hdrs["Content-Type"] = "application/json"
    try:
        if url.startswith("http://"):
            # open_url builds a TLS context for every request, even without TLS: ~0.1 s
            # each on a loaded host, which an agent read of 14 pages pays 14 times.
            # Plain HTTP goes to a fabric address, never through a proxy.
            parts = urlsplit(url)
            conn = HTTPConnection(parts.hostname or "", parts.port or 80, timeout=timeout)
            try:
                path = (parts.path or "/") + ("?" + parts.query if parts.query else "")
                conn.request(method, path, body=data.encode() if data else None, headers=hdrs)
                answer = conn.getresponse()
                return answer.status, dict(answer.getheaders()), answer.read()
            except HTTPException as exc:
                raise Unreachable(f"{type(exc).__name__}: {exc}") from None
            finally:
                conn.close()
        resp = open_url(
            url,
            data=data,
            method=method,
            headers=hdrs,
            timeout=timeout,
            validate_certs=validate_certs,
            ca_path=ca_path or None,
        )
        return resp.status, dict(resp.headers), resp.read()
    except HTTPError as exc:
        return exc.code, dict(exc.headers or {}), exc.read()
    except (URLError, OSError) as exc:
        raise Unreachable(str(getattr(exc, "reason", exc))) from None


def parsed(raw: bytes) -> Any:
    """The body as JSON; its text when it is not JSON (a proxy's error page); None when empty."""
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", "replace")
