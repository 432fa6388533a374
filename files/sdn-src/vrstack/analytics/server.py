"""The collector's HTTP layer: ingest with its limits, queries, status, alarms, OpenAPI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ..config.auth import Authenticator
from ..config.fields import FieldError
from ..config.server import PUBLIC, auth_middleware, errors_middleware
from ..service import httplimits
from ..service.daemon import add_background, add_health
from . import access, overview, page, query
from .alarms import AlarmBook, status_from_row
from .openapi import document
from .records import NAME_RE, check_record
from .store import AnalyticsStore, QueryTimeout, Retention, Rows, StoreError

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
NDJSON = ("application/x-ndjson", "application/jsonl", "application/json-seq")


@dataclass(frozen=True)
class Limits:
    """Bounds on what one sender can make the collector hold (docs/sdn-analytics.md)."""

    max_batch_bytes: int = 4 * 2**20
    max_batch_records: int = 10_000
    max_record_bytes: int = 16 * 1024
    source_rate: float = 50_000.0  # records per second per source, sustained
    source_burst: int = 100_000  # records per source at once (>= max_batch_records)
    source_inflight: int = 4  # batches of one source being handled at once
    max_pending: int = 200_000  # records accepted for commit but not committed, all sources


@dataclass(frozen=True)
class Options:
    limits: Limits = field(default_factory=Limits)
    retention: dict[str, Retention] = field(default_factory=dict)
    retention_interval: float = 60.0
    retention_batch: int = 10_000
    missed_intervals: int = 3
    alarm_interval: float = 5.0
    fabric: overview.Fabric = field(default_factory=lambda: overview.Fabric("", ()))
    page_window: float = 600.0  # seconds of ports, routes and flows the page shows
    project_vrfs: access.ProjectVrfs | None = None  # Keystone: a project's view (access.py)


class Bucket:
    """Token bucket: `rate` records per second, up to `burst` at once."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        self.rate, self.burst, self.tokens, self.t = rate, burst, float(burst), now

    def take(self, n: int, now: float) -> float:
        """0 when `n` records may go now, else the seconds to wait."""
        self.tokens = min(self.burst, self.tokens + (now - self.t) * self.rate)
        self.t = now
        if n <= self.tokens:
            self.tokens -= n
            return 0.0
        return (n - self.tokens) / self.rate


class Collector:
    """The app's state: store, limits, per-source accounting, alarms, counters."""

    def __init__(self, store: AnalyticsStore, options: Options) -> None:
        self.store = store
        self.options = options
        self.limits = options.limits
        self.book = AlarmBook(options.missed_intervals)
        self.buckets: dict[str, Bucket] = {}
        self.inflight: defaultdict[str, int] = defaultdict(int)
        self.pending = 0
        self.alarm_lock = asyncio.Lock()
        self.store_error = ""
        self.counters = {"accepted": 0, "duplicates": 0, "rejected": 0, "throttled": 0}

    def bucket(self, source: str, now: float) -> Bucket:
        b = self.buckets.get(source)
        if b is None:
            if len(self.buckets) > 10_000:  # bounded: forget sources idle long enough to be full
                idle = now - self.limits.source_burst / self.limits.source_rate
                self.buckets = {k: v for k, v in self.buckets.items() if v.t > idle}
            b = self.buckets[source] = Bucket(
                self.limits.source_rate, self.limits.source_burst, now
            )
        return b

    async def load(self, starting: bool = False) -> None:
        """The book from the store: when starting, and before every use with a shared
        store (another collector may have received a status or raised an alarm).
        Call with `alarm_lock` held."""
        if starting or self.store.shared:
            statuses, alarms = await self.store.statuses(), await self.store.alarms()
            self.book.load(statuses, alarms, None if self.store.shared else time.time())

    async def synced(self) -> AlarmBook:
        async with self.alarm_lock:
            await self.load()
        return self.book

    async def refresh_alarms(self, only: set[tuple[str, str]] | None = None) -> None:
        async with self.alarm_lock:
            await self.load()
            raised, cleared = self.book.evaluate(time.time(), only)
            for a in raised:
                log.warning("alarm raised", extra={"event": "alarm_raised", **a.as_json()})
            for a in cleared:
                log.info("alarm cleared", extra={"event": "alarm_cleared", **a.as_json()})
            if raised or cleared:
                await self.store.save_alarms(raised, cleared)


COLLECTOR = web.AppKey("collector", Collector)


def _error(status: int, message: str, **extra: Any) -> web.Response:
    headers = {}
    if "retry_after" in extra:  # the header has whole seconds; the body says it precisely
        headers["Retry-After"] = str(max(1, math.ceil(extra["retry_after"])))
    return web.json_response({"error": message, **extra}, status=status, headers=headers)


def too_big(limit: str, value: int, message: str, **extra: Any) -> web.Response:
    return _error(413, f"{message} (limit {limit} = {value})", limit=limit, **extra)


def too_many(limit: str, message: str, retry_after: float) -> web.Response:
    return _error(429, message, limit=limit, retry_after=round(max(0.01, retry_after), 3))


def _records(body: bytes, content_type: str, lim: Limits) -> list[Any] | web.Response:
    """The batch's records, or the 413 for a record over the size limit."""
    if content_type in NDJSON:
        lines = [x for x in body.split(b"\n") if x.strip()]
        if len(lines) > lim.max_batch_records:  # before parsing any of them
            return too_big(
                "max_batch_records", lim.max_batch_records, f"the batch has {len(lines)} records"
            )
        out = []
        for i, line in enumerate(lines):
            if len(line) > lim.max_record_bytes:
                return too_big(
                    "max_record_bytes",
                    lim.max_record_bytes,
                    f"records[{i}] is {len(line)} bytes",
                    field=f"records[{i}]",
                )
            try:
                out.append(json.loads(line))
            except (ValueError, UnicodeDecodeError, RecursionError):
                raise FieldError(f"records[{i}]", "is not valid JSON") from None
        return out
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError):  # deep nesting: RecursionError
        raise FieldError(
            "body", "the body is not valid JSON (or send application/x-ndjson)"
        ) from None
    records = data.get("records") if isinstance(data, dict) else data
    if not isinstance(records, list):
        raise FieldError("records", "must be a list of records")
    for i, rec in enumerate(records):
        size = len(json.dumps(rec, separators=(",", ":")))
        if size > lim.max_record_bytes:
            return too_big(
                "max_record_bytes",
                lim.max_record_bytes,
                f"records[{i}] is {size} bytes",
                field=f"records[{i}]",
            )
    return records


async def ingest(request: web.Request) -> web.Response:
    c = request.app[COLLECTOR]
    lim = c.limits
    source = request.match_info["source"]
    if not NAME_RE.fullmatch(source):
        raise FieldError("source", "must be 1-128 letters, digits or _.:@-")
    if request.content_length is not None and request.content_length > lim.max_batch_bytes:
        c.counters["rejected"] += 1
        return too_big("max_batch_bytes", lim.max_batch_bytes, "the batch is too large")
    if c.inflight[source] >= lim.source_inflight:
        c.counters["throttled"] += 1
        return too_many(
            "source_inflight", f"{source} already has {lim.source_inflight} batches in flight", 1
        )
    if c.pending >= lim.max_pending:  # the store is behind: do not even read the body
        c.counters["throttled"] += 1
        return too_many("max_pending", f"{c.pending} records are waiting to be stored", 1)
    c.inflight[source] += 1
    try:
        return await _ingest(request, c, source)
    finally:
        c.inflight[source] -= 1
        if not c.inflight[source]:
            del c.inflight[source]


async def _ingest(request: web.Request, c: Collector, source: str) -> web.Response:
    lim = c.limits
    try:
        body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        c.counters["rejected"] += 1
        return too_big("max_batch_bytes", lim.max_batch_bytes, "the batch is too large")
    records = _records(body, request.content_type, lim)
    if isinstance(records, web.Response):
        c.counters["rejected"] += 1
        return records
    n = len(records)
    if n > lim.max_batch_records:
        c.counters["rejected"] += 1
        return too_big("max_batch_records", lim.max_batch_records, f"the batch has {n} records")
    now = time.time()
    if c.pending + n > lim.max_pending:
        c.counters["throttled"] += 1
        return too_many("max_pending", f"{c.pending} records are waiting to be stored", 1)
    wait = c.bucket(source, now).take(n, now)
    if wait:
        c.counters["throttled"] += 1
        return too_many(
            "source_rate", f"{source} is over {lim.source_rate:g} records per second", wait
        )
    rows: Rows = {}
    for i, rec in enumerate(records):
        kind, row = check_record(rec, f"records[{i}]")
        rows.setdefault(kind.table, []).append(row)
    c.pending += n
    try:
        accepted, duplicates = await c.store.commit(source, rows)
    finally:
        c.pending -= n
    c.store_error = ""
    c.counters["accepted"] += accepted
    c.counters["duplicates"] += duplicates
    if "status" in rows:
        reported = set()
        for row in rows["status"]:
            s = status_from_row(source, row)
            c.book.report(s, now)
            reported.add((s.source, s.service))
        await c.refresh_alarms(reported)
    return web.json_response({"accepted": accepted, "duplicates": duplicates})


async def run_query(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except (ValueError, UnicodeDecodeError, RecursionError):
        raise FieldError("body", "the body is not valid JSON") from None
    table = body.get("table") if isinstance(body, dict) else None
    parsed = query.parse(body, time.time(), await access.visible_vrfs(request, table))
    started = time.monotonic()
    try:
        page = await request.app[COLLECTOR].store.select(parsed)
    except QueryTimeout as exc:
        raise FieldError("since", str(exc)) from None
    page["took_ms"] = round((time.monotonic() - started) * 1000, 1)
    return web.json_response(page)


def status_items(book: AlarmBook, now: float) -> list[dict[str, Any]]:
    items = []
    for s, seen in sorted(book.latest.values(), key=lambda x: (x[0].source, x[0].service)):
        items.append(
            {
                "source": s.source,
                "service": s.service,
                "ts": s.ts,
                "state": s.state,
                "late": now > seen + book.missed * s.interval,
                "interval": s.interval,
                "connections": s.connections,
                "datapath": s.datapath,
                "detail": s.detail,
            }
        )
    return items


async def list_status(request: web.Request) -> web.Response:
    book = await request.app[COLLECTOR].synced()
    return web.json_response({"items": status_items(book, time.time())})


async def forget_status(request: web.Request) -> web.Response:
    c = request.app[COLLECTOR]
    source, service = request.match_info["source"], request.match_info["service"]
    async with c.alarm_lock:
        known = await c.store.forget(source, service)
        c.book.forget(source, service)
    if not known:
        raise FieldError("service", f"no status from {service} on {source}", 404)
    return web.Response(status=204)


def alarm_items(book: AlarmBook) -> list[dict[str, Any]]:
    alarms = sorted(book.active.values(), key=lambda a: (a.since, a.key))
    return [a.as_json() for a in alarms]


async def list_alarms(request: web.Request) -> web.Response:
    book = await request.app[COLLECTOR].synced()
    return web.json_response({"items": alarm_items(book)})


async def get_overview(request: web.Request) -> web.Response:
    c = request.app[COLLECTOR]
    now = time.time()

    async def select(body: dict[str, Any]) -> list[dict[str, Any]]:
        try:
            answer = await c.store.select(query.parse(body, now))
        except QueryTimeout as exc:
            raise FieldError("overview", str(exc), 503) from None
        return answer["items"]  # type: ignore[no-any-return]

    book = await c.synced()
    data = await overview.build(
        c.options.fabric,
        status_items(book, now),
        alarm_items(book),
        select,
        c.options.page_window,
        now,
    )
    return web.json_response(data)


async def get_page(request: web.Request) -> web.Response:
    return page.response(request.path)


def writes_something(request: web.Request) -> bool:
    # Queries are POSTs but only read; ingest and forgetting a service write.
    return request.method == "DELETE" or request.path.startswith("/ingest/")


@web.middleware
async def store_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    c = request.app[COLLECTOR]
    try:
        response = await handler(request)
    except StoreError as exc:
        c.store_error = str(exc)
        log.error("store failed", extra={"error": str(exc), "path": request.path})
        return _error(503, f"the analytics store failed: {exc}")
    return response


def make_app(
    store: AnalyticsStore,
    auth: Authenticator,
    options: Options,
    http: httplimits.HttpLimits | None = None,
) -> web.Application:
    collector = Collector(store, options)
    app = web.Application(
        middlewares=[
            errors_middleware,
            # The page's files hold no data and must load before the operator has given
            # a token; the page then sends the token with its data requests like any client.
            auth_middleware(auth, writes_something, public={*PUBLIC, *page.FILES}),
            access.fabric_for_admins,
            store_errors,
        ],
        client_max_size=options.limits.max_batch_bytes,
    )
    httplimits.install(app, http or httplimits.HttpLimits())
    app[COLLECTOR] = collector
    if options.project_vrfs is not None:
        app[access.PROJECT_VRFS] = options.project_vrfs
    app.router.add_post("/ingest/{source}", ingest)
    app.router.add_post("/query", run_query)
    app.router.add_get("/status", list_status)
    app.router.add_delete("/status/{source}/{service}", forget_status)
    app.router.add_get("/alarms", list_alarms)
    app.router.add_get("/overview", get_overview)
    for path in page.FILES:
        app.router.add_get(path, get_page)
    doc = document(options.limits)

    async def openapi(_request: web.Request) -> web.Response:
        return web.json_response(doc)

    app.router.add_get("/openapi.json", openapi)

    async def health() -> dict[str, Any]:
        return {
            "status": "degraded" if collector.store_error else "ok",
            "store_error": collector.store_error,
            "pending": collector.pending,
            "alarms": len(collector.book.active),
            **collector.counters,
        }

    add_health(app, health)

    # A cleanup context, not on_startup: contexts start in order before on_startup hooks,
    # and the background tasks below need the store open; they stop before it closes.
    async def store_ctx(_app: web.Application) -> Any:
        await store.start()
        async with collector.alarm_lock:
            await collector.load(starting=True)
        yield
        await store.close()
        await auth.close()  # e.g. Keystone's HTTP connections
        if options.project_vrfs is not None:
            await options.project_vrfs.close()

    app.cleanup_ctx.append(store_ctx)

    async def retention(stop: asyncio.Event) -> None:
        while not stop.is_set():
            if options.retention:
                try:
                    deleted = await store.prune(
                        options.retention, time.time(), options.retention_batch
                    )
                    if any(deleted.values()):
                        log.info("pruned", extra={"event": "pruned", "deleted": deleted})
                except StoreError as exc:
                    log.error("pruning failed", extra={"error": str(exc)})
            await _sleep(stop, options.retention_interval)

    async def alarms(stop: asyncio.Event) -> None:
        while not stop.is_set():
            await _sleep(stop, options.alarm_interval)
            try:
                await collector.refresh_alarms()
            except StoreError as exc:
                log.error("saving alarms failed", extra={"error": str(exc)})

    add_background(app, "retention", retention)
    add_background(app, "alarms", alarms)
    return app


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
