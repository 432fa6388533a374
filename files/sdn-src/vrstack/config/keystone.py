"""Keystone v3 tokens for the config API (`auth.backend: keystone`).

Two Keystone calls, made with aiohttp's client (docs/sdn-config.md says why not
keystonemiddleware): `POST /v3/auth/tokens` gets the API's own service-user token with
the password from the config file, and `GET /v3/auth/tokens` with that token and the
caller's in `X-Subject-Token` validates the caller's. The service token is renewed a
minute before it expires, and at once when Keystone answers 401 to it.

Validations are cached by a SHA-256 of the token (the token itself is never kept) until
the token expires or `cache_ttl` passes, whichever is first, in a bounded LRU; a token
Keystone does not know is cached as invalid the same way (it never becomes valid). So a
revoked token is refused within `cache_ttl`. When Keystone cannot answer, the request
gets 503 naming the reason: never an open door, never a misleading 401.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import aiohttp

from ..service import tls
from ..service.settings import Settings

log = logging.getLogger(__name__)

MAX_TOKEN = 4096  # characters; Fernet and JWS tokens are a few hundred: refused unasked
RENEW_BEFORE = 60.0  # seconds before the service token's expiry


class KeystoneUnavailable(Exception):
    """Keystone did not give an answer we can act on; the request gets 503."""


@dataclass(frozen=True)
class Validated:
    """What Keystone said about a token: its user, project and role names."""

    user: str
    user_id: str
    project_id: str  # "" for a token not scoped to a project
    project: str
    roles: frozenset[str]


@dataclass(frozen=True)
class KeystoneSettings:
    url: str  # Keystone's base URL, with or without /v3
    username: str
    password: str
    user_domain: str = "Default"
    project: str = "service"
    project_domain: str = "Default"
    admin_roles: tuple[str, ...] = ("admin",)
    reader_roles: tuple[str, ...] = ("reader", "member")
    cache_ttl: float = 60.0  # seconds; 0 turns the cache off
    cache_size: int = 10000  # tokens
    timeout: float = 5.0  # seconds per Keystone request
    tls_files: tls.TlsFiles | None = None  # an https Keystone's CA (default: the system's)

    @property
    def v3(self) -> str:
        base = self.url.rstrip("/")
        return base if base.endswith("/v3") else base + "/v3"


def settings_from(settings: Settings) -> KeystoneSettings:
    """`auth.keystone.*` from the config file, each field checked."""
    p = "auth.keystone"
    url = settings.get_str(f"{p}.url")
    if not url.startswith(("http://", "https://")):
        raise settings.error(f"{p}.url", f"must be an http(s) URL, got {url!r}")
    ks = KeystoneSettings(
        url=url,
        username=settings.get_str(f"{p}.username"),
        password=settings.get_str(f"{p}.password"),
        user_domain=settings.get_str(f"{p}.user_domain", "Default"),
        project=settings.get_str(f"{p}.project", "service"),
        project_domain=settings.get_str(f"{p}.project_domain", "Default"),
        admin_roles=tuple(settings.get_list(f"{p}.admin_roles", ["admin"])),
        reader_roles=tuple(settings.get_list(f"{p}.reader_roles", ["reader", "member"])),
        cache_ttl=settings.get_float(f"{p}.cache_ttl", 60.0),
        cache_size=settings.get_int(f"{p}.cache_size", 10000, low=1, high=1_000_000),
        timeout=settings.get_float(f"{p}.timeout", 5.0),
        tls_files=tls.client_files(settings, f"{p}.tls"),
    )
    if ks.tls_files is not None and not url.startswith("https://"):
        raise settings.error(f"{p}.tls", f"is set but {p}.url is not https: {url}")
    if not ks.admin_roles:
        raise settings.error(f"{p}.admin_roles", "needs at least one Keystone role name")
    both = set(ks.admin_roles) & set(ks.reader_roles)
    if both:
        raise settings.error(f"{p}.reader_roles", f"also in admin_roles: {', '.join(sorted(both))}")
    if not 0 <= ks.cache_ttl <= 3600:
        raise settings.error(f"{p}.cache_ttl", f"must be 0 to 3600 seconds, got {ks.cache_ttl}")
    if not 0 < ks.timeout <= 60:
        raise settings.error(f"{p}.timeout", f"must be above 0 and at most 60, got {ks.timeout}")
    return ks


def _expiry(body: dict[str, Any]) -> float:
    """Seconds from now until the token in `body` expires (0 when unreadable)."""
    try:
        at = datetime.fromisoformat(body["token"]["expires_at"])
    except (KeyError, TypeError, ValueError):
        return 0.0
    return max(0.0, at.timestamp() - time.time())


class TokenValidator:
    """Validates tokens against Keystone, with the cache described above."""

    def __init__(self, s: KeystoneSettings) -> None:
        self.s = s
        self.counters = {"validations": 0, "cache_hits": 0, "service_tokens": 0, "errors": 0}
        self._cache: OrderedDict[str, tuple[float, Validated | None]] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[Validated | None]] = {}
        self._http: aiohttp.ClientSession | None = None
        self._service_token = ""
        self._service_until = 0.0  # monotonic
        self._lock = asyncio.Lock()
        self._last_error = ""
        self._retired: list[aiohttp.ClientSession] = []  # sessions a reload replaced

    async def close(self) -> None:
        for old in self._retired:
            await old.close()
        self._retired.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def use(self, s: KeystoneSettings) -> None:
        """Validate with `s` from now on (SIGHUP): the next validation logs in as its user.
        Cached answers stay: a token's validity does not depend on which service user
        asked, and dropping them would send every caller to Keystone at once. A login
        already under way finishes for its own request only (`_service`)."""
        if s == self.s:
            return
        old_http = None
        if (s.tls_files, s.timeout) != (self.s.tls_files, self.s.timeout):
            old_http, self._http = self._http, None  # new CA or timeout: a new session
        self.s = s
        self._service_token = ""
        self._service_until = 0.0
        if old_http is not None:  # requests under way finish on it; closed at shutdown
            self._retired.append(old_http)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            files = self.s.tls_files
            ssl_ctx = tls.client_context(files) if files else True
            self._http = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.s.timeout),
                connector=aiohttp.TCPConnector(ssl=ssl_ctx, limit=32),
            )
        return self._http

    # ---- the cache ------------------------------------------------------------------

    async def validate(self, token: str) -> Validated | None:
        """The token's user, project and roles; None when Keystone does not accept it."""
        if len(token) > MAX_TOKEN:
            return None
        key = hashlib.sha256(token.encode()).hexdigest()
        now = time.monotonic()
        hit = self._cache.get(key)
        if hit is not None:
            if hit[0] > now:
                self._cache.move_to_end(key)
                self.counters["cache_hits"] += 1
                return hit[1]
            del self._cache[key]
        # Concurrent requests with one token share one Keystone call.
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.ensure_future(self._validate_and_cache(key, token))
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._inflight[key] = task
            task.add_done_callback(lambda _t: self._inflight.pop(key, None))
        return await asyncio.shield(task)

    async def _validate_and_cache(self, key: str, token: str) -> Validated | None:
        result, lifetime = await self._validate(token)
        ttl = min(self.s.cache_ttl, lifetime)
        if ttl > 0:
            self._cache[key] = (time.monotonic() + ttl, result)
            while len(self._cache) > self.s.cache_size:
                self._cache.popitem(last=False)
        return result

    # ---- Keystone calls -----------------------------------------------------------

    def _failed(self, message: str) -> KeystoneUnavailable:
        self.counters["errors"] += 1
        if message != self._last_error:  # each new reason once, not once per request
            log.warning("keystone unavailable", extra={"error": message, "url": self.s.v3})
            self._last_error = message
        return KeystoneUnavailable(message)

    async def _validate(self, token: str) -> tuple[Validated | None, float]:
        """(result, seconds it may be cached); one retry with a new service token on 401."""
        for attempt in (1, 2):
            service = await self._service(renew_from="")
            try:
                async with self._session().get(
                    self.s.v3 + "/auth/tokens",
                    params={"nocatalog": "1"},
                    headers={"X-Auth-Token": service, "X-Subject-Token": token},
                ) as resp:
                    status = resp.status
                    body = await resp.json(content_type=None) if status == 200 else None
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise self._failed(f"cannot validate the token at {self.s.v3}: {exc!r}") from None
            self.counters["validations"] += 1
            if status == 200 and isinstance(body, dict):
                if self._last_error:
                    log.info("keystone reachable again", extra={"url": self.s.v3})
                    self._last_error = ""
                return self._read(body), _expiry(body)
            if status == 404:  # unknown, expired or revoked
                return None, self.s.cache_ttl
            if status == 401 and attempt == 1:
                await self._service(renew_from=service)
                continue
            if status == 403:
                raise self._failed(
                    f"Keystone does not let {self.s.username} validate tokens: "
                    "give it the service (or admin) role in its project"
                )
            raise self._failed(f"Keystone answered {status} to a token validation")
        raise self._failed("Keystone refused a fresh service token")

    def _read(self, body: dict[str, Any]) -> Validated:
        tok = body.get("token") or {}
        user = tok.get("user") or {}
        project = tok.get("project") or {}
        roles = frozenset(str(r.get("name", "")) for r in tok.get("roles") or [])
        return Validated(
            user=str(user.get("name", "")),
            user_id=str(user.get("id", "")),
            project_id=str(project.get("id", "")),
            project=str(project.get("name", "")),
            roles=roles,
        )

    async def _service(self, renew_from: str) -> str:
        """Our own token; `renew_from`: the token Keystone just refused, to replace it."""
        async with self._lock:
            fresh = self._service_token and time.monotonic() < self._service_until
            if fresh and self._service_token != renew_from:
                return self._service_token
            s = self.s  # a reload may swap the settings while this login waits
            body = {
                "auth": {
                    "identity": {
                        "methods": ["password"],
                        "password": {
                            "user": {
                                "name": s.username,
                                "domain": {"name": s.user_domain},
                                "password": s.password,
                            }
                        },
                    },
                    "scope": {
                        "project": {
                            "name": s.project,
                            "domain": {"name": s.project_domain},
                        }
                    },
                }
            }
            try:
                async with self._session().post(
                    s.v3 + "/auth/tokens", params={"nocatalog": "1"}, json=body
                ) as resp:
                    status = resp.status
                    token = resp.headers.get("X-Subject-Token", "")
                    data = await resp.json(content_type=None) if status == 201 else None
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise self._failed(f"cannot reach Keystone at {s.v3}: {exc!r}") from None
            if status == 401:
                raise self._failed(
                    f"Keystone refused the service user {s.username} in project "
                    f"{s.project} (auth.keystone.username/password)"
                )
            if status != 201 or not token or not isinstance(data, dict):
                raise self._failed(f"Keystone answered {status} to the service user's login")
            self.counters["service_tokens"] += 1
            lifetime = _expiry(data)
            if s is self.s:  # else the token is of the user a reload replaced: this request only
                self._service_token = token
                self._service_until = time.monotonic() + max(lifetime - RENEW_BEFORE, lifetime / 2)
            return token
