"""What the collector needs from its storage: `store_sqlite.SQLiteStore` (one analytics
node) and `store_mariadb.MariaDBStore` (one database several collectors share) implement
it (see docs/sdn-analytics.md)."""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

from .query import Query


class StoreError(Exception):
    """The store cannot do what was asked (disk full, file locked, server gone)."""


class QueryTimeout(Exception):
    """A query ran longer than the store allows."""


@dataclass(frozen=True)
class Retention:
    """Per table: drop rows older than `max_age` seconds and beyond `max_rows` (0: no limit)."""

    max_age: float = 0.0
    max_rows: int = 0


@dataclass(frozen=True)
class Status:
    """The latest status of one service on one node (what alarms are computed from)."""

    source: str
    service: str
    ts: float
    state: str
    interval: float
    connections: list[dict[str, str]]
    datapath: str
    detail: str
    # When it arrived, by the receiving collector's clock: kept by shared stores, whose
    # collectors must agree on lateness; 0 where the store does not keep it.
    seen: float = 0.0


@dataclass(frozen=True)
class Alarm:
    type: str  # control-lost, service-down, datapath-missing
    source: str
    service: str
    since: float
    reason: str

    @property
    def key(self) -> str:
        return f"{self.type}:{self.source}:{self.service}"

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.key,
            "type": self.type,
            "source": self.source,
            "service": self.service,
            "since": self.since,
            "reason": self.reason,
        }


Rows = dict[str, list[tuple[Any, ...]]]  # table -> rows in column order, without source


class AnalyticsStore(abc.ABC):
    # Several collectors write to it: their statuses and alarms are read back from the
    # store, not kept per process (a store only one collector uses keeps them in memory).
    shared: bool = False

    @abc.abstractmethod
    async def start(self) -> None: ...

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def commit(self, source: str, rows: Rows) -> tuple[int, int]:
        """Store one batch in one transaction, durably, before returning (accepted,
        duplicates). Rows whose (source, id) is already stored are duplicates and skipped."""

    @abc.abstractmethod
    async def select(self, query: Query) -> dict[str, Any]:
        """Run a query; returns `{"items": [...], "next": cursor-or-None}`."""

    @abc.abstractmethod
    async def prune(self, policy: dict[str, Retention], now: float, batch: int) -> dict[str, int]:
        """Delete at most `batch` expired rows per table; returns how many per table."""

    @abc.abstractmethod
    async def statuses(self) -> list[Status]:
        """The latest status of every (source, service) ever reported and not forgotten."""

    @abc.abstractmethod
    async def forget(self, source: str, service: str) -> bool:
        """Drop a decommissioned service's latest status; False when there was none."""

    @abc.abstractmethod
    async def alarms(self) -> list[Alarm]: ...

    @abc.abstractmethod
    async def save_alarms(self, raised: list[Alarm], cleared: list[Alarm]) -> None: ...

    @abc.abstractmethod
    async def counts(self) -> dict[str, int]:
        """Rows per table (for /health and the tests)."""
