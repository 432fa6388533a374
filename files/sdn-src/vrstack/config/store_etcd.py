"""etcd v3 backend over etcd's HTTP/JSON gateway (`/v3/kv/*`, `/v3/watch`).

Keys live under `prefix` (so several clusters or services can share one etcd).
etcd's own revision is the store revision; `changes` is an etcd watch started at
`since + 1`, so history is what etcd keeps until it is compacted.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from .store import JSON, KV, Compacted, Conflict, Event, Store, StoreUnavailable, prefix_end

MAX_TXN_OPS = 100


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()


class EtcdStore(Store):
    def __init__(
        self,
        endpoints: list[str],
        prefix: str = "/vrstack/",
        watch_prefix: str = "obj/",
        timeout: float = 5.0,
    ) -> None:
        self.endpoints = [e.rstrip("/") for e in endpoints]
        self.prefix = prefix
        self.watch_prefix = watch_prefix
        self.timeout = timeout
        self._session: aiohttp.ClientSession | None = None
        self._current = 0  # index of the endpoint that answered last

    async def start(self) -> None:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _post(self, path: str, body: JSON) -> JSON:
        """POST to the first endpoint that answers, starting with the last good one."""
        assert self._session is not None, "store not started"
        errors = []
        n = len(self.endpoints)
        for i in range(n):
            idx = (self._current + i) % n
            url = self.endpoints[idx] + path
            try:
                async with self._session.post(
                    url, json=body, timeout=aiohttp.ClientTimeout(total=self.timeout)
                ) as resp:
                    data: JSON = await resp.json(content_type=None)
                    if resp.status != 200:
                        raise StoreUnavailable(f"etcd {url}: HTTP {resp.status}: {data}")
                    self._current = idx
                    return data
            except (aiohttp.ClientError, TimeoutError, json.JSONDecodeError) as exc:
                errors.append(f"{url}: {exc!r}")
        raise StoreUnavailable("no etcd endpoint answered: " + "; ".join(errors))

    def _kv(self, item: JSON) -> KV:
        key = _unb64(item["key"])[len(self.prefix) :]
        return KV(key, json.loads(_unb64(item.get("value", ""))), int(item.get("mod_revision", 0)))

    async def get(self, key: str) -> KV | None:
        data = await self._post("/v3/kv/range", {"key": _b64(self.prefix + key)})
        kvs = data.get("kvs", [])
        return self._kv(kvs[0]) if kvs else None

    async def get_many(self, keys: Sequence[str]) -> dict[str, KV | None]:
        # Read-only transactions of up to MAX_TXN_OPS ranges each (etcd's --max-txn-ops
        # defaults to 128): few round trips for many keys.
        unique = list(dict.fromkeys(keys))
        out: dict[str, KV | None] = {}
        for i in range(0, len(unique), MAX_TXN_OPS):
            chunk = unique[i : i + MAX_TXN_OPS]
            body = {"success": [{"request_range": {"key": _b64(self.prefix + k)}} for k in chunk]}
            data = await self._post("/v3/kv/txn", body)
            for key, resp in zip(chunk, data.get("responses", []), strict=True):
                kvs = resp.get("response_range", {}).get("kvs", [])
                out[key] = self._kv(kvs[0]) if kvs else None
        return out

    async def range(self, prefix: str, start_after: str = "", limit: int = 1000) -> list[KV]:
        low = max(prefix, start_after + "\0") if start_after else prefix
        data = await self._post(
            "/v3/kv/range",
            {
                "key": _b64(self.prefix + low),
                "range_end": _b64(self.prefix + prefix_end(prefix)),
                "limit": limit,
            },
        )
        return [self._kv(item) for item in data.get("kvs", [])]

    async def revision(self) -> int:
        data = await self._post(
            "/v3/kv/range", {"key": _b64(self.prefix), "limit": 1, "keys_only": True}
        )
        return int(data["header"]["revision"])

    async def txn(
        self, compares: Mapping[str, int], puts: Mapping[str, JSON], deletes: Sequence[str]
    ) -> int:
        compare = [
            {"target": "MOD", "result": "EQUAL", "key": _b64(self.prefix + k), "mod_revision": v}
            for k, v in compares.items()
        ]
        success: list[JSON] = [
            {"request_delete_range": {"key": _b64(self.prefix + k)}} for k in deletes
        ]
        success += [
            {
                "request_put": {
                    "key": _b64(self.prefix + k),
                    "value": _b64(json.dumps(v, separators=(",", ":"), sort_keys=True)),
                }
            }
            for k, v in puts.items()
        ]
        data = await self._post("/v3/kv/txn", {"compare": compare, "success": success})
        if not data.get("succeeded"):
            raise Conflict(",".join(compares))
        return int(data["header"]["revision"])

    async def changes(self, since: int, timeout: float, limit: int = 1000) -> list[Event]:
        assert self._session is not None, "store not started"
        wp = self.prefix + self.watch_prefix
        body = {
            "create_request": {
                "key": _b64(wp),
                "range_end": _b64(prefix_end(wp)),
                "start_revision": since + 1,
                "prev_kv": True,
            }
        }
        deadline = time.monotonic() + timeout
        url = self.endpoints[self._current] + "/v3/watch"
        try:
            async with self._session.post(url, json=body) as resp:
                if resp.status != 200:
                    raise StoreUnavailable(f"etcd watch {url}: HTTP {resp.status}")
                # The gateway streams one JSON document per line; the first says "created"
                # and carries the current revision.
                first = await asyncio.wait_for(resp.content.readline(), self.timeout)
                created: JSON = json.loads(first).get("result", {}) if first else {}
                if not created.get("created"):
                    raise StoreUnavailable(f"etcd watch {url}: unexpected {first[:200]!r}")
                if int(created.get("header", {}).get("revision", 0)) > since:
                    # History after `since` exists: give etcd a moment to replay it even
                    # when the caller asked not to wait for new changes.
                    deadline = max(deadline, time.monotonic() + 1.0)
                while True:
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return []
                    try:
                        line = await asyncio.wait_for(resp.content.readline(), remaining)
                    except TimeoutError:
                        return []
                    if not line:
                        raise StoreUnavailable(f"etcd watch {url}: stream closed")
                    result: JSON = json.loads(line).get("result", {})
                    if int(result.get("compact_revision", 0)):
                        raise Compacted(int(result["compact_revision"]))
                    events = [self._event(e) for e in result.get("events", [])]
                    if events:
                        return events
        except (aiohttp.ClientError, json.JSONDecodeError, TimeoutError) as exc:
            # Try the next endpoint on the next call.
            self._current = (self._current + 1) % len(self.endpoints)
            raise StoreUnavailable(f"etcd watch {url}: {exc!r}") from exc

    def _event(self, item: JSON) -> Event:
        kv: dict[str, Any] = item["kv"]
        key = _unb64(kv["key"])[len(self.prefix) :]
        prev = item.get("prev_kv")
        prev_value = json.loads(_unb64(prev["value"])) if prev and prev.get("value") else None
        if item.get("type") == "DELETE":
            return Event(int(kv["mod_revision"]), key, None, prev_value)
        return Event(int(kv["mod_revision"]), key, json.loads(_unb64(kv["value"])), prev_value)
