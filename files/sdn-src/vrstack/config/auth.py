"""Who is calling: pluggable authenticators that map a request to roles.

`static`: tokens from the config file: admin, read-only (the lab), and optionally one
for the vrouter agents, which may read and write `port-state` objects only. Each role
takes one token (`admin_token`) and/or a list (`admin_tokens`); during a rotation the
list holds the new and the old token, and SIGHUP reads them again (`reload_auth`).
`keystone`: Keystone v3 tokens (`keystone.py`), Keystone roles mapped to ours by the
config file; a read-only token is scoped to its project (`access.py`). SIGHUP reads the
`auth.keystone` section again too, so the service user can change without a restart
(the rotation switches between two users).
Both at once: `static` with an `auth.keystone` section. The static tokens are checked
first, so the SDN's own services work before Keystone exists and while it is down; any
other token goes to Keystone (what the roles deploy when the inventory runs OpenStack).
An authenticator returns None for no or a bad token (401), raises HTTPForbidden for a
valid token without a role here (403) and HTTPServiceUnavailable when it cannot tell
(503); the API's error middleware turns those into JSON errors.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
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


Tokens = str | Sequence[str] | None


def _tuple(tokens: Tokens) -> tuple[str, ...]:
    if tokens is None:
        return ()
    return (tokens,) if isinstance(tokens, str) else tuple(tokens)


class StaticTokens:
    """Tokens per role; each role may have several at once, so a token can be rotated
    without a gap: the servers accept new and old, the clients switch, the old goes."""

    def __init__(self, admin: Tokens, reader: Tokens = None, agent: Tokens = None) -> None:
        self.admin_tokens = _tuple(admin)
        self.reader_tokens = _tuple(reader)
        self.agent_tokens = _tuple(agent)

    def replace(self, other: StaticTokens) -> None:
        """Take `other`'s tokens (a reload): requests from now on are checked against them."""
        self.admin_tokens = other.admin_tokens
        self.reader_tokens = other.reader_tokens
        self.agent_tokens = other.agent_tokens

    @staticmethod
    def _match(token: bytes, tokens: tuple[str, ...]) -> bool:
        # Compare with every token (no early exit), in constant time each.
        found = False
        for candidate in tokens:
            found |= hmac.compare_digest(token, candidate.encode())
        return found

    async def authenticate(self, request: web.Request) -> Identity | None:
        token = request_token(request)
        if token is None:
            return None
        given = token.encode()
        if self._match(given, self.admin_tokens):
            return Identity("admin", frozenset({ADMIN, READER}))
        if self._match(given, self.reader_tokens):
            return Identity("reader", frozenset({READER}))
        if self._match(given, self.agent_tokens):
            return Identity("agent", frozenset({READER, AGENT}))
        return None

    async def close(self) -> None:
        pass


class KeystoneTokens:
    """X-Auth-Token validated by Keystone; `admin_roles` -> admin, `reader_roles` -> read."""

    def __init__(self, ks: keystone.KeystoneSettings) -> None:
        self.ks = ks
        self.validator = keystone.TokenValidator(ks)

    def replace(self, ks: keystone.KeystoneSettings) -> None:
        """Validate with `ks` from now on (a reload): its user, password and role lists."""
        self.ks = ks
        self.validator.use(ks)

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
    static = static_from(settings)
    if uses_keystone(settings):
        return StaticThenKeystone(static, KeystoneTokens(keystone.settings_from(settings)))
    return static


def _tokens(settings: Settings, role: str) -> list[str]:
    """`auth.<role>_token` (one) and `auth.<role>_tokens` (a list, during a rotation:
    new and old), merged in that order. Messages never show a value."""
    section = settings.data.get("auth") or {}
    found: list[str] = []
    one = section.get(f"{role}_token")
    if one not in (None, ""):
        if not isinstance(one, str):
            raise settings.error(f"auth.{role}_token", "must be a string")
        found.append(one)
    many = section.get(f"{role}_tokens")
    if isinstance(many, str):  # INI: comma-separated
        many = [t.strip() for t in many.split(",") if t.strip()]
    if many is not None:
        if not isinstance(many, list) or not all(isinstance(t, str) for t in many):
            raise settings.error(f"auth.{role}_tokens", "must be a list of strings")
        found += [t for t in many if t not in found]
    for token in found:
        if len(token) < 16:
            raise settings.error(f"auth.{role}_token", "must be at least 16 characters")
    return found


def static_from(settings: Settings) -> StaticTokens:
    """The static tokens of a config file (also what a reload reads again)."""
    admin = _tokens(settings, ADMIN)
    reader = _tokens(settings, READER)
    agent = _tokens(settings, AGENT)
    if not admin:
        raise settings.error("auth.admin_token", "is required (or auth.admin_tokens)")
    if set(reader) & set(admin):
        raise settings.error("auth.reader_token", "must differ from admin_token")
    if set(agent) & (set(admin) | set(reader)):
        raise settings.error("auth.agent_token", "must differ from the other tokens")
    return StaticTokens(admin, reader, agent)


def static_part(authenticator: Authenticator) -> StaticTokens | None:
    """The static tokens inside an authenticator (None for Keystone alone)."""
    if isinstance(authenticator, StaticTokens):
        return authenticator
    if isinstance(authenticator, StaticThenKeystone):
        return authenticator.static
    return None


def keystone_part(authenticator: Authenticator) -> KeystoneTokens | None:
    """The Keystone validation inside an authenticator (None for static tokens alone)."""
    if isinstance(authenticator, KeystoneTokens):
        return authenticator
    if isinstance(authenticator, StaticThenKeystone):
        return authenticator.keystone
    return None


def reload_auth(authenticator: Authenticator) -> Callable[[Settings], None]:
    """What SIGHUP does to a server's credentials: read the static tokens and the
    `auth.keystone` section again and swap them in together (all or nothing: a file with
    a bad token or Keystone setting leaves the old ones). Turning Keystone tokens on or
    off changes the authenticator's kind: that needs a restart, and the reload refuses it."""

    def apply(settings: Settings) -> None:
        static = static_part(authenticator)
        ks_tokens = keystone_part(authenticator)
        if uses_keystone(settings) != (ks_tokens is not None):
            raise settings.error(
                "auth.keystone", "added or removed: Keystone tokens on or off need a restart"
            )
        new_static = static_from(settings) if static is not None else None
        new_ks = keystone.settings_from(settings) if ks_tokens is not None else None
        if static is not None and new_static is not None:
            static.replace(new_static)
        if ks_tokens is not None and new_ks is not None:
            ks_tokens.replace(new_ks)

    return apply
