"""The storage interface of the config API: a small revisioned key-value store.

Both backends (SQLite, etcd) give the same guarantees:
- every committed transaction gets the next revision, a monotonically increasing integer;
- a value's `mod_rev` is the revision that last wrote it (the object's version/ETag);
- `txn` applies puts and deletes atomically, and only if every compared key still has
  the expected `mod_rev` (0 = the key must be absent); otherwise it raises `Conflict`;
- `changes` returns the committed writes to watched keys after a revision, waiting up
  to a timeout for the first, whole revisions at a time, or raises `Compacted` when that
  history is no longer kept.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

JSON = dict[str, Any]


@dataclass(frozen=True)
class KV:
    key: str
    value: JSON
    mod_rev: int


@dataclass(frozen=True)
class Event:
    revision: int
    key: str
    value: JSON | None  # None: the key was deleted
    prev: JSON | None  # the value before a delete, when known


class Conflict(Exception):
    """A compared key changed since it was read; re-read and retry."""


class Compacted(Exception):
    """The requested history is gone; the reader must list everything again."""

    def __init__(self, compact_revision: int) -> None:
        super().__init__(f"history before revision {compact_revision} is compacted")
        self.compact_revision = compact_revision


class StoreUnavailable(Exception):
    """The backend cannot be reached."""


class Store(abc.ABC):
    @abc.abstractmethod
    async def get(self, key: str) -> KV | None: ...

    async def get_many(self, keys: Sequence[str]) -> dict[str, KV | None]:
        """Several keys at once (one round trip where the backend allows it)."""
        return {k: await self.get(k) for k in keys}

    @abc.abstractmethod
    async def range(self, prefix: str, start_after: str = "", limit: int = 1000) -> list[KV]:
        """Keys under `prefix` greater than `start_after`, in key order."""

    @abc.abstractmethod
    async def txn(
        self, compares: Mapping[str, int], puts: Mapping[str, JSON], deletes: Sequence[str]
    ) -> int:
        """Apply atomically if all compares hold; return the new revision."""

    @abc.abstractmethod
    async def changes(self, since: int, timeout: float, limit: int = 1000) -> list[Event]:
        """Writes to watched keys with revision > since; [] after `timeout` seconds."""

    @abc.abstractmethod
    async def revision(self) -> int: ...

    @abc.abstractmethod
    async def start(self) -> None:
        """Open connections; called once before use."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Release resources."""


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with `prefix`."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)
