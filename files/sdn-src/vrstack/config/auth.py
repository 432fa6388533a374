"""Who is calling: pluggable authenticators that map a request to roles.

`static`: tokens from the config file: admin, read-only (the lab), and optionally one
for the vrouter agents, which may read and write `port-state` objects only.
`keystone`: Keystone v3 tokens (`keystone.py`), Keystone roles mapped to ours by the
config file; a read-only token is scoped to its project (`access.py`).
Both at once: `static` with an `auth.keystone` section. The static tokens are checked
first, so the SDN's own services work before Keystone exists and while it is down; any
other token goes to Keystone (what the roles deploy when the inventory runs OpenStack).
An authenticator returns None for no or a bad token (401), raises HTTPForbidden for a
valid token without a role here (403) and HTTPServiceUnavailable when it cannot tell
(503); the API's error middleware turns those into JSON errors.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from ..service.settings import Settings
from . import keystone

ADMIN = "admin"
READER = "reader"
AGENT = "agent"
# What an agent may change: its ports' states, nothing else (a compute is not trusted
# with the network config).
AGENT_WRITES = ("/port-states",)


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[str]
    project_id: str = ""  # the Keystone project the token is scoped to ("" when none)
    user_id: str = ""

    @property
    def can_write(self) -> bool:
        return ADMIN in self.roles

    @property
    def scoped(self) -> bool:
        """Sees only its Keystone project's objects (access.py): a non-admin Keystone token."""
        return bool(self.project_id) and ADMIN not in self.roles

    def may_write(self, path: str) -> bool:
        """Whether this caller may change what is at `path`."""
        if self.can_write:
            return True
        return AGENT in self.roles and any(
            path == p or path.startswith(p + "/") for p in AGENT_WRITES
        )


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> Identity | None:
        """The caller's identity, or None when the request carries no valid credentials."""
        ...

    async def close(self) -> None:
        """Release connections (called when the API stops)."""
        ...


def request_token(request: web.Request) -> str | None:
    token = request.headers.get("X-Auth-Token")
    if token:
        return token
    auth = request.headers.get("Authorization", "")
    if auth.lower().startswith("bearer "):
        return auth[7:].strip()
    return None


class StaticTokens:
    def __init__(
        self, admin_token: str, reader_token: str | None, agent_token: str | None = None
    ) -> None:
        self.admin_token = admin_token
        self.reader_token = reader_token
        self.agent_token = agent_token

    async def authenticate(self, request: web.Request) -> Identity | None:
        token = request_token(request)
        if token is None:
            return None
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Identity("admin", frozenset({ADMIN, READER}))
        if self.reader_token and hmac.compare_digest(token.encode(), self.reader_token.encode()):
            return Identity("reader", frozenset({READER}))
        if self.agent_token and hmac.compare_digest(token.encode(), self.agent_token.encode()):
            return Identity("agent", frozenset({READER, AGENT}))
        return None

    async def close(self) -> None:
        pass


class KeystoneTokens:
    """X-Auth-Token validated by Keystone; `admin_roles` -> admin, `reader_roles` -> read."""

    def __init__(self, ks: keystone.KeystoneSettings) -> None:
        self.ks = ks
        self.validator = keystone.TokenValidator(ks)

    async def authenticate(self, request: web.Request) -> Identity | None:
        token = request_token(request)
        if token is None:
            return None
        try:
            found = await self.validator.validate(token)
        except keystone.KeystoneUnavailable as exc:
            raise web.HTTPServiceUnavailable(reason=f"cannot check the token: {exc}") from None
        if found is None:
            return None
        if found.roles & set(self.ks.admin_roles):
            roles = frozenset({ADMIN, READER})
        elif found.roles & set(self.ks.reader_roles):
            if not found.project_id:  # it would see every project's objects
                raise web.HTTPForbidden(
                    reason=f"{found.user}: a read-only token must be scoped to a project"
                )
            roles = frozenset({READER})
        else:
            wanted = ", ".join((*self.ks.admin_roles, *self.ks.reader_roles))
            raise web.HTTPForbidden(
                reason=f"{found.user} has none of the roles {wanted} in project {found.project}"
            )
        return Identity(found.user, roles, found.project_id, found.user_id)

    async def close(self) -> None:
        await self.validator.close()


class StaticThenKeystone:
    """The static tokens (the SDN's services), then Keystone (people) for any other token."""

    def __init__(self, static: StaticTokens, keystone_tokens: KeystoneTokens) -> None:
        self.static = static
        self.keystone = keystone_tokens

    async def authenticate(self, request: web.Request) -> Identity | None:
        found = await self.static.authenticate(request)
        if found is not None:
            return found
        return await self.keystone.authenticate(request)

    async def close(self) -> None:
        await self.keystone.close()


def uses_keystone(settings: Settings) -> bool:
    """Whether Keystone tokens are accepted (alone, or after the static ones): then a
    read-only token may be scoped to a project."""
    backend = settings.get_choice("auth.backend", ("static", "keystone"), "static")
    return backend == "keystone" or (settings.data.get("auth") or {}).get("keystone") is not None


def from_settings(settings: Settings) -> Authenticator:
    backend = settings.get_choice("auth.backend", ("static", "keystone"), "static")
    if backend == "keystone":
        return KeystoneTokens(keystone.settings_from(settings))
    static = _static_from(settings)
    if uses_keystone(settings):
        return StaticThenKeystone(static, KeystoneTokens(keystone.settings_from(settings)))
    return static


def _static_from(settings: Settings) -> StaticTokens:
    admin = settings.get_str("auth.admin_token")
    reader = (
        settings.get_str("auth.reader_token", None)
        if "reader_token" in (settings.data.get("auth") or {})
        else None
    )
    if len(admin) < 16:
        raise settings.error("auth.admin_token", "must be at least 16 characters")
    if reader is not None and (len(reader) < 16 or reader == admin):
        raise settings.error(
            "auth.reader_token", "must be at least 16 characters and differ from admin_token"
        )
    agent = settings.get_str("auth.agent_token", "") or None
    if agent is not None and (len(agent) < 16 or agent in (admin, reader)):
        raise settings.error(
            "auth.agent_token", "must be at least 16 characters and differ from the other tokens"
        )
    return StaticTokens(admin, reader, agent)
