"""The config API's HTTP layer: routes per resource type, errors as JSON, auth checks."""

from __future__ import annotations

import asyncio
import logging
import uuid as uuidlib
from collections.abc import Awaitable, Callable, Collection
from typing import Any

from aiohttp import web

from ..service import httplimits
from ..service.daemon import add_health
from . import access
from .auth import Authenticator
from .fields import FieldError
from .model import RESOURCES, Resource
from .objects import ConfigDB
from .openapi import MAX_BODY, document
from .store import Compacted, StoreUnavailable

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
DB_KEY = web.AppKey("config_db", ConfigDB)
STOPPING_KEY = web.AppKey("stopping", asyncio.Event)
PUBLIC = ("/health", "/openapi.json")


def _error(status: int, message: str, field: str | None = None, **extra: Any) -> web.Response:
    body: dict[str, Any] = {"error": message, **extra}
    if field:
        body["field"] = field
    return web.json_response(body, status=status)


def _etag(obj: dict[str, Any]) -> dict[str, str]:
    return {"ETag": f'"{obj["version"]}"'}


@web.middleware
async def errors_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except FieldError as exc:
        return _error(exc.status, exc.message, exc.field)
    except Compacted as exc:
        return _error(410, str(exc), "since", compact_revision=exc.compact_revision)
    except StoreUnavailable as exc:
        log.warning("store unavailable", extra={"error": str(exc)})
        return _error(503, f"the config store is unavailable: {exc}")
    except web.HTTPRequestEntityTooLarge as exc:  # its text says the limit and the size
        return _error(413, exc.text or exc.reason)
    except web.HTTPException as exc:
        if exc.status >= 400:
            return _error(exc.status, exc.reason)
        raise
    except Exception:
        log.exception("request failed", extra={"path": request.path, "method": request.method})
        return _error(500, "internal error; see the server log")


def changes_state(request: web.Request) -> bool:
    return request.method not in ("GET", "HEAD")


def auth_middleware(
    auth: Authenticator,
    writes: Callable[[web.Request], bool] = changes_state,
    public: Collection[str] = PUBLIC,
) -> Any:
    """401 without a valid token (except on the `public` paths); 403 when a read-only
    caller makes a request that `writes` says changes something. Shared by every API."""
    open_paths = frozenset(public)

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path in open_paths:
            return await handler(request)
        identity = await auth.authenticate(request)
        if identity is None:
            return _error(401, "a valid token is required (X-Auth-Token header)")
        if writes(request) and not identity.may_write(request.path):
            return _error(403, f"{identity.name} may only read")
        request[access.IDENTITY] = identity
        return await handler(request)

    return middleware


async def _body(request: web.Request) -> Any:
    if request.content_length is not None and request.content_length > MAX_BODY:
        # Refused before reading: a declared size says enough.
        raise web.HTTPRequestEntityTooLarge(
            MAX_BODY,
            request.content_length,
            text=f"the body is {request.content_length} bytes; at most {MAX_BODY} are accepted",
        )
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        raise FieldError("", "the body is not valid JSON") from None
    except RecursionError:  # json's C decoder gives up on deep nesting this way
        raise FieldError("", "the body nests arrays or objects too deeply") from None


def _int_param(request: web.Request, name: str, default: int | None, low: int, high: int) -> int:
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise FieldError(name, "is required")
        return default
    try:
        value = int(text)
    except ValueError:
        raise FieldError(name, "must be an integer") from None
    if not low <= value <= high:
        raise FieldError(name, f"must be between {low} and {high}")
    return value


def _if_match(request: web.Request) -> int | None:
    text = request.headers.get("If-Match")
    if text is None or text.strip() == "*":
        return None
    text = text.strip().removeprefix("W/").strip('"')
    try:
        return int(text)
    except ValueError:
        raise FieldError("If-Match", "must be an ETag this server returned") from None


def _routes(app: web.Application, res: Resource) -> None:
    async def list_(request: web.Request) -> web.Response:
        db = request.app[DB_KEY]
        limit = _int_param(request, "limit", 100, 1, 1000)
        filters: dict[str, str] | None = {
            k: v for k, v in request.query.items() if k not in ("limit", "cursor")
        }
        scope = await access.scope_of(request, db)
        if scope is not None:
            scope.check_type(res)
            filters = scope.list_filters(res, filters or {})
            if filters is None:
                return web.json_response({"items": [], "next": None, "revision": 0})
        items, nxt, rev = await db.list_page(res, filters or {}, limit, request.query.get("cursor"))
        if scope is not None:
            items = [o for o in items if await scope.owns(db, res, o)]
        return web.json_response({"items": items, "next": nxt, "revision": rev})

    async def create(request: web.Request) -> web.Response:
        obj = await request.app[DB_KEY].create(res, await _body(request))
        return web.json_response(obj, status=201, headers=_etag(obj))

    async def read(request: web.Request) -> web.Response:
        db = request.app[DB_KEY]
        obj = await db.get(res, _uuid(request))
        scope = await access.scope_of(request, db)
        if scope is not None:
            scope.check_type(res)
            if not await scope.owns(db, res, obj):  # as if it did not exist
                raise FieldError("uuid", f"no {res.name} with uuid {obj['uuid']}", 404)
        return web.json_response(obj, headers=_etag(obj))

    async def update(request: web.Request) -> web.Response:
        obj = await request.app[DB_KEY].update(
            res, _uuid(request), await _body(request), _if_match(request)
        )
        return web.json_response(obj, headers=_etag(obj))

    async def delete(request: web.Request) -> web.Response:
        await request.app[DB_KEY].delete(res, _uuid(request), _if_match(request))
        return web.Response(status=204)

    app.router.add_get(f"/{res.plural}", list_)
    app.router.add_post(f"/{res.plural}", create)
    app.router.add_get(f"/{res.plural}/{{uuid}}", read)
    app.router.add_put(f"/{res.plural}/{{uuid}}", update)
    app.router.add_delete(f"/{res.plural}/{{uuid}}", delete)


def _uuid(request: web.Request) -> str:
    text = request.match_info["uuid"]
    try:
        return str(uuidlib.UUID(text))
    except ValueError:
        raise FieldError("uuid", "is not a UUID", 404) from None


async def watch(request: web.Request) -> web.Response:
    if await access.scope_of(request, request.app[DB_KEY]) is not None:
        raise web.HTTPForbidden(reason="the watch feed carries every project's changes")
    since = _int_param(request, "since", None, 0, 2**63 - 1)
    limit = _int_param(request, "limit", 1000, 1, 10000)
    try:
        timeout = float(request.query.get("timeout", "30"))
    except ValueError:
        raise FieldError("timeout", "must be a number of seconds") from None
    if not 0 <= timeout <= 300:
        raise FieldError("timeout", "must be between 0 and 300")
    # A long poll must not hold up shutdown: it ends early, with no events, when the
    # server stops; the client then resumes from the same revision elsewhere.
    types = None
    if "types" in request.query:
        types = {t for t in request.query["types"].split(",") if t}
        unknown = types - set(RESOURCES)
        if unknown:
            raise FieldError("types", f"unknown types: {', '.join(sorted(unknown))}")
    changes = asyncio.ensure_future(request.app[DB_KEY].watch(since, timeout, limit, types))
    stopping = asyncio.ensure_future(request.app[STOPPING_KEY].wait())
    try:
        await asyncio.wait({changes, stopping}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopping.cancel()
        if not changes.done():
            changes.cancel()
            # cancel() only requests it: let the task finish before reading it.
            await asyncio.wait({changes})
    if changes.cancelled():
        return web.json_response({"events": [], "revision": since})
    events, revision = changes.result()
    return web.json_response({"events": events, "revision": revision})


def make_app(
    db: ConfigDB,
    auth: Authenticator,
    backend: str,
    http: httplimits.HttpLimits | None = None,
) -> web.Application:
    app = web.Application(
        middlewares=[errors_middleware, auth_middleware(auth)], client_max_size=MAX_BODY
    )
    httplimits.install(app, http or httplimits.HttpLimits())
    app[DB_KEY] = db
    app[STOPPING_KEY] = asyncio.Event()

    async def stopping(_app: web.Application) -> None:
        _app[STOPPING_KEY].set()

    app.on_shutdown.append(stopping)
    for res in RESOURCES.values():
        _routes(app, res)
    app.router.add_get("/watch", watch)
    doc = document()

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(doc)

    app.router.add_get("/openapi.json", openapi)

    async def health() -> dict[str, Any]:
        return {"status": "ok", "backend": backend, "revision": await db.store.revision()}

    add_health(app, health)

    async def open_store(_app: web.Application) -> None:
        await db.store.start()

    async def close_store(_app: web.Application) -> None:
        await db.store.close()
        await auth.close()  # e.g. Keystone's HTTP connections

    app.on_startup.append(open_store)
    app.on_cleanup.append(close_store)
    return app
