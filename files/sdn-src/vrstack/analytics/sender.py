"""Send records to the collector: what services and agents use (docs/sdn-analytics.md).

    sender = Sender("https://198.18.1.11:8081", source="compute1", token="...", ssl_context=ctx)
    add_background(app, "analytics", sender.run)        # or: task = create_task(sender.run(stop))
    sender.emit("status", service="vrstack-agent", state="up", interval=10, connections=[...])
    sender.emit("flow", start=..., end=..., vrf=..., src_ip=..., ...)

`emit` never blocks and never fails: it puts the record on a bounded in-memory queue
(call it from the event loop's thread). `run` sends batches as NDJSON; a record leaves
the queue only when the collector acknowledged it (it is then committed there), so a
lost connection or a collector restart loses nothing while the queue has room. When the
collector is away long enough for the queue to fill, the oldest records are dropped and
counted in `stats["dropped"]`. Every record gets an id unique to this sender, so a
batch resent after a lost answer is not stored twice. An https:// collector is checked
with `ssl_context` (the deployment CA; `service.tls.https_client`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import ssl
import time
from collections import deque
from typing import Any

import aiohttp

log = logging.getLogger(__name__)

_RECORD_RE = re.compile(r"records\[(\d+)\]")


class Sender:
    def __init__(
        self,
        url: str,
        source: str,
        token: str | None = None,
        *,
        max_queue: int = 10_000,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        backoff_min: float = 0.5,
        backoff_max: float = 30.0,
        timeout: float = 10.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.url = url.rstrip("/") + "/ingest/" + source
        self.ssl_context = ssl_context
        self.source = source
        self.headers = {"Content-Type": "application/x-ndjson"}
        self.token = token  # sent with each batch: a reload may change it
        self.max_queue = max_queue
        self.batch_size = batch_size
        self.flush_interval = flush_interval
        self.backoff_min = backoff_min
        self.backoff_max = backoff_max
        self.timeout = timeout
        self.queue: deque[dict[str, Any]] = deque()
        self.stats = {"sent": 0, "duplicates": 0, "dropped": 0, "rejected": 0, "retries": 0}
        self.last_error = ""
        self._prefix = secrets.token_hex(6)  # a new sender never reuses an old one's ids
        self._seq = 0
        self._inflight = 0
        self._wake = asyncio.Event()
        self._delay = backoff_min

    # ---- producer side ----------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> str:
        """Queue one record (fields as in docs/sdn-analytics.md); returns its id."""
        self._seq += 1
        rid = f"{self._prefix}-{self._seq}"
        record = {"kind": kind, "id": rid, **fields}
        if kind != "flow" and "ts" not in record:
            record["ts"] = time.time()
        if len(self.queue) >= self.max_queue:
            self.queue.popleft()
            self.stats["dropped"] += 1
        self.queue.append(record)
        if len(self.queue) >= self.batch_size:
            self._wake.set()
        return rid

    @property
    def backlog(self) -> int:
        """Records not yet acknowledged (queued or being sent)."""
        return len(self.queue) + self._inflight

    async def flushed(self, timeout: float) -> bool:
        """Wait until everything emitted so far is acknowledged (or dropped); bounded."""
        self._wake.set()
        deadline = time.monotonic() + timeout
        while self.backlog and time.monotonic() < deadline:
            await asyncio.sleep(0.02)
        return not self.backlog

    # ---- sending ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Send until `stop` is set, then make one last attempt at what is left."""
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        connector = aiohttp.TCPConnector(ssl=self.ssl_context or True)
        async with aiohttp.ClientSession(
            timeout=timeout, headers=self.headers, connector=connector
        ) as session:
            while not stop.is_set():
                await self._wait(stop, self.flush_interval)
                await self._drain(session, stop)
            await self._drain(session, None)

    async def _wait(self, stop: asyncio.Event, seconds: float) -> None:
        """Sleep up to `seconds`, cut short by a full batch (`_wake`) or by `stop`."""
        self._wake.clear()
        waits = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _drain(self, session: aiohttp.ClientSession, stop: asyncio.Event | None) -> None:
        """Send while there is something to send; on a failure back off (or, when
        stopping, give up at once and keep the records queued)."""
        while self.queue:
            batch = [self.queue.popleft() for _ in range(min(self.batch_size, len(self.queue)))]
            self._inflight = len(batch)
            try:
                retry_in = await self._post(session, batch)
            finally:
                self._inflight = 0
            if retry_in is None:
                continue
            if stop is None or stop.is_set():
                return
            self.stats["retries"] += 1
            await self._wait(stop, retry_in)
            if stop.is_set():
                return

    def _put_back(self, batch: list[dict[str, Any]]) -> None:
        self.queue.extendleft(reversed(batch))
        while len(self.queue) > self.max_queue:  # drop the oldest: they matter least now
            self.queue.popleft()
            self.stats["dropped"] += 1

    async def _post(
        self, session: aiohttp.ClientSession, batch: list[dict[str, Any]]
    ) -> float | None:
        """Send one batch. None when it is settled (stored, or refused for good); else the
        seconds to wait before resending what was put back on the queue."""
        body = b"\n".join(json.dumps(r, separators=(",", ":")).encode() for r in batch)
        try:
            auth = {"X-Auth-Token": self.token} if self.token else None
            async with session.post(self.url, data=body, headers=auth) as resp:
                answer: dict[str, Any] = {}
                with contextlib.suppress(aiohttp.ContentTypeError, ValueError):
                    answer = await resp.json()
                status, retry_after = resp.status, resp.headers.get("Retry-After")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._put_back(batch)
            return self._backoff()
        if status == 200:
            self.stats["sent"] += int(answer.get("accepted", 0))
            self.stats["duplicates"] += int(answer.get("duplicates", 0))
            self._delay = self.backoff_min
            return None
        self.last_error = f"{status}: {answer.get('error', '')}"
        if status == 429:
            self._put_back(batch)
            try:
                return float(answer.get("retry_after") or retry_after or 1)
            except (TypeError, ValueError):
                return 1.0
        m = _RECORD_RE.match(str(answer.get("field", "")))
        if status in (400, 413) and m and int(m.group(1)) < len(batch):
            # One bad or oversized record refuses the batch: drop it, resend the rest.
            bad = batch.pop(int(m.group(1)))
            log.warning(
                "collector refused a record",
                extra={"status": status, "answer": answer, "kind": bad.get("kind")},
            )
            self.stats["rejected"] += 1
            self._put_back(batch)
            return 0.0
        if status == 413 and len(batch) > 1:
            self.batch_size = max(1, len(batch) // 2)
            self._put_back(batch)
            return 0.0
        if 400 <= status < 500 and status not in (401, 403, 408):
            # Refused for a reason no resend fixes (e.g. a bad source name): drop it.
            log.warning("collector refused a batch", extra={"status": status, "answer": answer})
            self.stats["rejected"] += len(batch)
            return None
        self._put_back(batch)  # 5xx, or auth that an operator may fix: keep and retry
        return self._backoff()

    def _backoff(self) -> float:
        delay = self._delay * random.uniform(0.8, 1.2)
        self._delay = min(self._delay * 2, self.backoff_max)
        return delay
