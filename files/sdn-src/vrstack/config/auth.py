"""Who is calling: pluggable authenticators that map a request to roles.

`static`: two tokens from the config file, one admin and one read-only (the lab).
`keystone`: the place for keystonemiddleware's token validation when deployed with
OpenStack; not built yet, so choosing it is a config error rather than a silent open door.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from typing import Protocol

from aiohttp import web

from ..service.settings import Settings

ADMIN = "admin"
READER = "reader"


@dataclass(frozen=True)
class Identity:
    name: str
    roles: frozenset[str]

    @property
    def can_write(self) -> bool:
        return ADMIN in self.roles


class Authenticator(Protocol):
    async def authenticate(self, request: web.Request) -> Identity | None:
        """The caller's identity, or None when the request carries no valid credentials."""
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
    def __init__(self, admin_token: str, reader_token: str | None) -> None:
        self.admin_token = admin_token
        self.reader_token = reader_token

    async def authenticate(self, request: web.Request) -> Identity | None:
        token = request_token(request)
        if token is None:
            return None
        if hmac.compare_digest(token.encode(), self.admin_token.encode()):
            return Identity("admin", frozenset({ADMIN, READER}))
        if self.reader_token and hmac.compare_digest(token.encode(), self.reader_token.encode()):
            return Identity("reader", frozenset({READER}))
        return None


class KeystoneTokens:
    """Hook for keystonemiddleware: validate X-Auth-Token, map Keystone roles to ours."""

    def __init__(self, settings: Settings) -> None:
        raise settings.error(
            "auth.backend", "keystone is not available yet in this release; use static"
        )

    async def authenticate(self, request: web.Request) -> Identity | None:  # pragma: no cover
        raise NotImplementedError


def from_settings(settings: Settings) -> Authenticator:
    backend = settings.get_choice("auth.backend", ("static", "keystone"), "static")
    if backend == "keystone":
        return KeystoneTokens(settings)
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
    return StaticTokens(admin, reader)
