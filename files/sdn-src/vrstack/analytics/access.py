"""What a caller may read from the collector: everything, or its own project's flows and ports.

Admins and the static tokens see everything, as on the config API. A Keystone token whose
roles are only read roles is scoped to its project (`config.auth.Identity.scoped`): it may
query the `flows` and `ports` tables, and sees only the rows whose routing instance (`vrf`)
belongs to the config project whose `keystone_id` is the token's project. Everything else
the collector holds is the fabric's (service status, alarms, `/overview`, logs, counters):
403. A project without a config project, or without networks, sees nothing.

The project's routing instances come from the config API, asked with the caller's own token
(the collector needs no credentials of its own there, and the config API applies its own
rule), and are cached per Keystone project for `config_api.cache_ttl` seconds in a bounded
LRU: a network created meanwhile shows after at most that long.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from ..config.access import IDENTITY
from ..config.auth import Identity, request_token, uses_keystone
from ..config.client import ApiError, ConfigClient
from ..service import tls
from ..service.settings import Settings

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# What a project-scoped caller may ask: queries, and of those only these tables.
TENANT_PATHS = frozenset({"/query"})
TENANT_TABLES = ("flows", "ports")
MAX_PAGES = 100  # of 1000 routing instances: a bound on one lookup


class ProjectVrfs:
    """Keystone project id -> the names of its config project's routing instances."""

    def __init__(
        self,
        client: ConfigClient,
        ttl: float = 30.0,
        size: int = 1000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.client = client
        self.ttl = ttl
        self.size = size
        self.clock = clock
        self.lookups = 0  # calls to the config API, for tests and /health readers
        self._cache: OrderedDict[str, tuple[float, frozenset[str]]] = OrderedDict()

    async def close(self) -> None:
        await self.client.close()

    async def of(self, identity: Identity, token: str) -> frozenset[str]:
        now = self.clock()
        hit = self._cache.get(identity.project_id)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(identity.project_id)
            return hit[1]
        vrfs = await self._lookup(identity, token)
        if self.ttl > 0:
            self._cache[identity.project_id] = (now + self.ttl, vrfs)
            self._cache.move_to_end(identity.project_id)
            while len(self._cache) > self.size:
                self._cache.popitem(last=False)
        return vrfs

    async def _lookup(self, identity: Identity, token: str) -> frozenset[str]:
        headers = {"X-Auth-Token": token}
        self.lookups += 1
        try:
            # The config project the config API maps this Keystone project to (its first,
            # as the config API's own scope does); then that project's routing instances.
            found = await self.client.request(
                "GET",
                "/projects",
                headers=headers,
                params={"keystone_id": identity.project_id, "limit": 1},
            )
            if not found["items"]:
                return frozenset()
            project = found["items"][0]["name"]
            vrfs: set[str] = set()
            params: dict[str, Any] = {"limit": 1000}
            for _page in range(MAX_PAGES):
                page = await self.client.request(
                    "GET", "/routing-instances", headers=headers, params=params
                )
                # Kept by name here too: right even if the config API saw an admin token.
                vrfs.update(
                    ":".join(ri["fq_name"]) for ri in page["items"] if ri["fq_name"][0] == project
                )
                if not page["next"]:
                    return frozenset(vrfs)
                params["cursor"] = page["next"]
        except ApiError as exc:
            if exc.status in (401, 403):
                raise web.HTTPForbidden(
                    reason=f"the config API refused {identity.name}'s token: {exc.body.get('error')}"
                ) from None
            raise web.HTTPServiceUnavailable(
                reason=f"cannot find project {identity.project_id}'s networks: {exc}"
            ) from None
        except (aiohttp.ClientError, TimeoutError, KeyError, TypeError, IndexError) as exc:
            raise web.HTTPServiceUnavailable(
                reason=f"cannot find project {identity.project_id}'s networks at "
                f"{self.client.url}: {exc!r}"
            ) from None
        raise web.HTTPServiceUnavailable(
            reason=f"project {identity.project_id} has over {MAX_PAGES * 1000} routing "
            "instances in the fabric to look through"
        )


PROJECT_VRFS = web.AppKey("project_vrfs", ProjectVrfs)


def from_settings(s: Settings) -> ProjectVrfs | None:
    """`config_api` (url, tls.ca, timeout, cache_ttl, cache_size): required when Keystone
    tokens are accepted (`auth.backend: keystone` or an `auth.keystone` section), where
    read-only tokens are scoped to a project."""
    section = s.data.get("config_api")
    if section is None:
        if uses_keystone(s):
            raise s.error(
                "config_api.url",
                "is required with Keystone tokens (auth.keystone): a project's networks "
                "come from it",
            )
        return None
    if not isinstance(section, dict):
        raise s.error("config_api", "must be a mapping with url (and tls, timeout, cache_ttl)")
    for key in section:
        if key not in ("url", "tls", "timeout", "cache_ttl", "cache_size"):
            raise s.error(f"config_api.{key}", "unknown; one of url, tls, timeout, cache_ttl")
    url = s.get_str("config_api.url")
    if not url.startswith(("http://", "https://")):
        raise s.error("config_api.url", f"must be an http(s) URL, got {url!r}")
    timeout = s.get_float("config_api.timeout", 5.0)
    if not 0 < timeout <= 60:
        raise s.error("config_api.timeout", "must be above 0 and at most 60 seconds")
    ttl = s.get_float("config_api.cache_ttl", 30.0)
    if not 0 <= ttl <= 3600:
        raise s.error("config_api.cache_ttl", "must be 0 to 3600 seconds")
    ssl_context = tls.https_client(s, "config_api.url", "config_api.tls")
    return ProjectVrfs(
        ConfigClient(url, "", timeout, ssl_context=ssl_context),
        ttl,
        s.get_int("config_api.cache_size", 1000, low=1, high=1_000_000),
    )


def _scoped(request: web.Request) -> Identity | None:
    identity = request.get(IDENTITY)
    return identity if identity is not None and identity.scoped else None


@web.middleware
async def fabric_for_admins(request: web.Request, handler: Handler) -> web.StreamResponse:
    """403 for a project-scoped caller on anything but a query (after auth_middleware)."""
    identity = _scoped(request)
    if identity is not None and request.path not in TENANT_PATHS:
        raise web.HTTPForbidden(
            reason=f"{identity.name} may not read {request.path}: the fabric's, not a project's"
        )
    return await handler(request)


async def visible_vrfs(request: web.Request, table: Any) -> frozenset[str] | None:
    """None when the caller sees every row of `table`; else the routing instances whose
    rows it may see (403 for a table that is not a project's)."""
    identity = _scoped(request)
    if identity is None:
        return None
    if table not in TENANT_TABLES:
        raise web.HTTPForbidden(
            reason=f"{identity.name} may not query {table}: the fabric's, not a project's; "
            f"a project's tables: {', '.join(TENANT_TABLES)}"
        )
    views = request.app.get(PROJECT_VRFS)
    if views is None:  # only Keystone tokens are scoped, and they need config_api
        raise web.HTTPServiceUnavailable(reason="the collector has no config_api setting")
    return await views.of(identity, request_token(request) or "")
