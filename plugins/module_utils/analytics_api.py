# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Run a query against the analytics query API (logic of the analytics_query module).

`POST /query` of `vrstack-collector` (docs/sdn-analytics.md) takes a JSON body and
answers one page with a `next` cursor; `run()` follows the cursor up to `max_pages`
pages. The HTTP part is one `post` callable, testable against a real collector.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ansible_collections.vrstack.cloud.plugins.module_utils import api_client

# (path, JSON body) -> (status, parsed body)
Post = Callable[[str, Any], tuple[int, Any]]

# The query's keys the module passes through (the API refuses unknown ones itself).
QUERY_KEYS = ("table", "select", "where", "since", "until", "group_by", "sort", "limit")


class QueryError(api_client.Failure):
    """The API refused the query or cannot be reached."""


def open_url_poster(
    base_url: str,
    token: str,
    timeout: float = 30.0,
    validate_certs: bool = True,
    ca_path: str | None = None,
) -> Post:
    """A `post` over the modules' HTTP client (module_utils/api_client.py)."""
    headers = {"X-Auth-Token": token} if token else {}

    def post(path: str, body: Any) -> tuple[int, Any]:
        url = base_url.rstrip("/") + path
        try:
            status, _hdrs, raw = api_client.request(
                url, "POST", body, headers, timeout, validate_certs, ca_path
            )
        except api_client.Unreachable as exc:
            raise QueryError(
                f"cannot reach the analytics API at {base_url}: {exc} "
                "(is vrstack-collector running on the analytics node? see "
                "`systemctl status vrstack-collector`)"
            ) from None
        return status, api_client.parsed(raw)

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
