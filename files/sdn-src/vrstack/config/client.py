"""An async client of the config API and a local mirror kept current by its watch feed.

The mirror is what other services (schema transformer, control node, agent) build on:

    mirror = Mirror(client, ["virtual-network", "routing-instance"])
    await mirror.resync()                       # list everything, note the revision
    async for batch in mirror.follow(stop):     # long-poll /watch from that revision
        if batch.resynced: ...                   # everything may have changed
        for ev in batch.events: ...              # or just these puts and deletes

A reconnect resumes from the last revision seen, so no change is missed; when the
server no longer has that history (410) the mirror lists everything again.

An https:// URL is checked with `ssl_context` (`service.tls.https_client` builds it from
a daemon's settings: the deployment CA, the server's name or address).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from ..service.settings import Settings
from .model import RESOURCES

log = logging.getLogger(__name__)
JSON = dict[str, Any]


class ApiError(Exception):
    def __init__(self, status: int, body: Any, method: str, path: str) -> None:
        self.status = status
        self.body = body if isinstance(body, dict) else {"error": str(body)}
        field = self.body.get("field")
        super().__init__(
            f"{method} {path}: HTTP {status}: {self.body.get('error')}"
            + (f" (field {field})" if field else "")
        )


class ConfigClient:
    def __init__(
        self,
        url: str,
        token: str,
        timeout: float = 10.0,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.token = token
        self.timeout = timeout
        self.ssl_context = ssl_context
        self._session: aiohttp.ClientSession | None = None

    async def __aenter__(self) -> ConfigClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            # ssl=True: https:// without a context of its own checks against the system CAs.
            connector = aiohttp.TCPConnector(ssl=self.ssl_context or True)
            # request() also sends the token it holds now (a reload may change it); the
            # session's is for callers that use the session itself.
            self._session = aiohttp.ClientSession(
                headers={"X-Auth-Token": self.token}, connector=connector
            )
        return self._session

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        headers: dict[str, str] | None = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> Any:
        async with self.session.request(
            method,
            self.url + path,
            json=body,
            headers={"X-Auth-Token": self.token, **(headers or {})},
            params=params,
            timeout=aiohttp.ClientTimeout(total=timeout or self.timeout),
        ) as resp:
            data = await resp.json(content_type=None) if resp.status != 204 else None
            if resp.status >= 400:
                raise ApiError(resp.status, data, method, path)
            return data

    @staticmethod
    def _path(rtype: str, uid: str | None = None) -> str:
        plural = RESOURCES[rtype].plural
        return f"/{plural}/{uid}" if uid else f"/{plural}"

    async def create(self, rtype: str, body: JSON) -> JSON:
        result: JSON = await self.request("POST", self._path(rtype), body)
        return result

    async def get(self, rtype: str, uid: str) -> JSON | None:
        try:
            result: JSON = await self.request("GET", self._path(rtype, uid))
            return result
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    async def update(self, rtype: str, uid: str, body: JSON, version: int | None = None) -> JSON:
        headers = {"If-Match": f'"{version}"'} if version is not None else None
        result: JSON = await self.request("PUT", self._path(rtype, uid), body, headers=headers)
        return result

    async def delete(self, rtype: str, uid: str, version: int | None = None) -> None:
        headers = {"If-Match": f'"{version}"'} if version is not None else None
        await self.request("DELETE", self._path(rtype, uid), headers=headers)

    async def list_all(self, rtype: str, **filters: str) -> tuple[list[JSON], int]:
        """Every object of a type (following cursors), and the revision before the first page."""
        items: list[JSON] = []
        params: dict[str, Any] = {"limit": 1000, **filters}
        revision = None
        while True:
            page = await self.request("GET", self._path(rtype), params=params)
            if revision is None:
                revision = int(page["revision"])
            items += page["items"]
            if not page["next"]:
                return items, revision
            params["cursor"] = page["next"]

    async def watch(
        self, since: int, timeout: float = 30.0, types: Iterable[str] | None = None
    ) -> tuple[list[JSON], int]:
        params: dict[str, Any] = {"since": since, "timeout": timeout}
        if types is not None:
            params["types"] = ",".join(types)
        data = await self.request("GET", "/watch", params=params, timeout=timeout + 10)
        return data["events"], int(data["revision"])


@dataclass(frozen=True)
class Batch:
    """Changes applied to a mirror in one step."""

    resynced: bool  # the mirror listed everything again
    events: list[JSON]  # the watch events that changed it, in revision order

    @property
    def types(self) -> set[str]:
        return {ev["type"] for ev in self.events}


class Mirror:
    """A local copy of some object types, updated from the watch feed."""

    def __init__(self, client: ConfigClient, types: Iterable[str]) -> None:
        self.client = client
        self.types = list(types)
        self.objects: dict[str, dict[str, JSON]] = {t: {} for t in self.types}
        self.revision = 0
        self.connected = False
        self.resyncs = 0  # full listings; a reconnect that resumes does not count

    async def resync(self) -> None:
        fresh: dict[str, dict[str, JSON]] = {}
        start: int | None = None
        for t in self.types:
            items, rev = await self.client.list_all(t)
            # Changes after the first list's revision are replayed by the watch; an object
            # already newer than an event is kept (see apply), so nothing goes back in time.
            start = rev if start is None else start
            fresh[t] = {o["uuid"]: o for o in items}
        self.objects = fresh
        self.revision = start or 0
        self.resyncs += 1
        self.connected = True
        log.info(
            "mirror resynced",
            extra={"revision": self.revision, "counts": {t: len(v) for t, v in fresh.items()}},
        )

    def apply(self, events: list[JSON]) -> list[JSON]:
        """Apply watch events; returns those that changed the mirror, in order."""
        changed: list[JSON] = []
        for ev in events:
            table = self.objects.get(ev["type"])
            if table is None:
                continue
            current = table.get(ev["uuid"])
            if current is not None and current["version"] > ev["revision"]:
                continue
            if ev["op"] == "delete":
                if table.pop(ev["uuid"], None) is not None:
                    changed.append(ev)
            else:
                table[ev["uuid"]] = ev["object"]
                changed.append(ev)
        return changed

    async def follow(self, stop: asyncio.Event, poll: float = 25.0) -> AsyncIterator[Batch]:
        """Yield each batch of changes applied to the mirror, until `stop` is set.

        After a (re)sync the batch has `resynced` set: the caller rebuilds from scratch.
        """
        delay = 0.2
        need_resync = not self.connected
        while not stop.is_set():
            try:
                if need_resync:
                    await self.resync()
                    need_resync = False
                    yield Batch(resynced=True, events=[])
                watch = asyncio.ensure_future(self.client.watch(self.revision, poll, self.types))
                stopper = asyncio.ensure_future(stop.wait())
                done, _ = await asyncio.wait({watch, stopper}, return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if watch not in done:
                    watch.cancel()
                    return
                events, revision = watch.result()
                self.connected = True
                delay = 0.2
                changed = self.apply(events)
                self.revision = max(self.revision, revision)
                if changed:
                    yield Batch(resynced=False, events=changed)
            except ApiError as exc:
                if exc.status == 410:
                    log.warning("watch history compacted; listing again")
                    need_resync = True
                    continue
                await self._backoff(stop, delay, exc)
                delay = min(delay * 2, 5.0)
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                await self._backoff(stop, delay, exc)
                delay = min(delay * 2, 5.0)

    async def _backoff(self, stop: asyncio.Event, delay: float, exc: Exception) -> None:
        self.connected = False
        log.warning("config API unreachable; retrying", extra={"error": str(exc), "delay": delay})
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


def new_api_token(client: ConfigClient, field: str) -> Callable[[Settings], None]:
    """A daemon's reload (SIGHUP) of the config API token it sends: the next request
    carries the new one; open sessions and watches go on."""

    def apply(settings: Settings) -> None:
        token = settings.get_str(field)
        if not token:
            raise settings.error(field, "is empty")
        client.token = token

    return apply
