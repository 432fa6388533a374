# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a query against the analytics query API (logic of the analytics_query module).

`POST /query` of `vrstack-collector` (docs/sdn-analytics.md) takes a JSON body and
answers one page with a `next` cursor; `run()` follows the cursor up to `max_pages`
pages. The HTTP part is one `post` callable, testable against a real collector.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# (path, JSON body) -> (status, parsed body)
Post = Callable[[str, Any], tuple[int, Any]]

# The query's keys the module passes through (the API refuses unknown ones itself).
QUERY_KEYS = ("table", "select", "where", "since", "until", "group_by", "sort", "limit")


class QueryError(Exception):
    """The API refused the query or cannot be reached; `field` names the bad part."""

    def __init__(self, message: str, status: int = 0, field_name: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.field_name = field_name


def open_url_poster(
    base_url: str, token: str, timeout: float = 30.0, validate_certs: bool = True
) -> Post:
    """A `post` over Ansible's open_url (proxies, certificates) for the module."""
    from urllib.error import HTTPError, URLError

    from ansible.module_utils.urls import open_url  # only where Ansible is present

    def post(path: str, body: Any) -> tuple[int, Any]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if token:
            headers["X-Auth-Token"] = token
        try:
            resp = open_url(
                base_url.rstrip("/") + path,
                data=json.dumps(body),
                method="POST",
                headers=headers,
                timeout=timeout,
                validate_certs=validate_certs,
            )
            status, raw = resp.status, resp.read()
        except HTTPError as exc:
            status, raw = exc.code, exc.read()
        except (URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise QueryError(
                f"cannot reach the analytics API at {base_url}: {reason} "
                "(is vrstack-collector running on the analytics node? see "
                "`systemctl status vrstack-collector`)"
            ) from None
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            return status, raw.decode("utf-8", "replace")

    return post


def build(params: dict[str, Any]) -> dict[str, Any]:
    """The query body from the module's options (unset ones left to the API's defaults)."""
    return {k: params[k] for k in QUERY_KEYS if params.get(k) not in (None, [], "")}


def run(post: Post, body: dict[str, Any], max_pages: int = 1) -> dict[str, Any]:
    """Items of up to `max_pages` pages; `next` is the cursor of the page after them."""
    items: list[dict[str, Any]] = []
    took = 0.0
    page: dict[str, Any] = {}
    cursor = None
    pages = 0
    while pages < max_pages:
        pages += 1
        ask = dict(body, cursor=cursor) if cursor else body
        status, page = post("/query", ask)
        if status != 200 or not isinstance(page, dict):
            msg = page.get("error") if isinstance(page, dict) else page
            fld = page.get("field", "") if isinstance(page, dict) else ""
            where = f" (field {fld})" if fld else ""
            raise QueryError(f"POST /query: {status}: {msg}{where}", status, fld)
        items.extend(page.get("items", []))
        took += float(page.get("took_ms", 0))
        cursor = page.get("next")
        if not cursor:
            break
    return {"items": items, "count": len(items), "next": cursor, "pages": pages, "took_ms": took}
