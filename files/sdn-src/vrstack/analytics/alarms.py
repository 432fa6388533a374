"""Alarms from the latest status of every service: computed, raised and cleared here.

- `service-down`: the service reported `down`, or nothing came from it for
  `missed` of its own reporting intervals (timed by the collector's clock from when the
  report arrived, so a sender's clock skew cannot raise or hide it);
- `control-lost`: it reports control-node connections and none of them is up;
- `datapath-missing`: an agent reports its datapath absent.

An alarm keeps the `since` and `reason` of when it was raised until its condition goes.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from .store import Alarm, Status


def _when(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def status_from_row(source: str, row: tuple[Any, ...]) -> Status:
    """A status record as validated by `records.check_record`."""
    _id, ts, service, state, interval, conns, datapath, detail = row
    return Status(source, service, ts, state, interval, json.loads(conns), datapath, detail)


def conditions(
    statuses: Iterable[tuple[Status, float]], now: float, missed: int
) -> dict[str, Alarm]:
    """The alarms that should be active: (status, when it arrived) in, alarms by key out."""
    out: dict[str, Alarm] = {}

    def add(kind: str, s: Status, since: float, reason: str) -> None:
        alarm = Alarm(kind, s.source, s.service, since, reason)
        out[alarm.key] = alarm

    for s, seen in statuses:
        detail = f": {s.detail}" if s.detail else ""
        late = seen + missed * s.interval
        if s.state == "down":
            add("service-down", s, s.ts, f"{s.service} on {s.source} reported down{detail}")
        elif now > late:
            add(
                "service-down",
                s,
                late,
                f"no status from {s.service} on {s.source} since {_when(seen)} "
                f"({missed} intervals of {s.interval:g} s)",
            )
        controls = [c for c in s.connections if c["type"] == "control"]
        if controls and not any(c["state"] == "up" for c in controls):
            peers = ", ".join(f"{c['name']} {c['state']}" for c in controls)
            add("control-lost", s, s.ts, f"{s.source} has no control node connection up ({peers})")
        if s.datapath == "absent":
            add("datapath-missing", s, s.ts, f"{s.service} on {s.source} has no datapath{detail}")
    return out


class AlarmBook:
    """The latest status per (source, service) and the active alarms, in memory."""

    def __init__(self, missed: int) -> None:
        self.missed = missed
        self.latest: dict[tuple[str, str], tuple[Status, float]] = {}
        self.active: dict[str, Alarm] = {}

    def load(
        self, statuses: Iterable[Status], alarms: Iterable[Alarm], restarted: float | None
    ) -> None:
        """Take the store's statuses and alarms. After a restart of the only collector
        (`restarted` = now), services get `missed` intervals from then before they are
        late; with a shared store (None) they keep the arrival time the store has."""
        self.latest = {
            (s.source, s.service): (s, s.seen if restarted is None else restarted) for s in statuses
        }
        self.active = {a.key: a for a in alarms}

    def report(self, status: Status, now: float) -> None:
        key = (status.source, status.service)
        old = self.latest.get(key)
        if old is None or status.ts >= old[0].ts:
            self.latest[key] = (status, now)

    def forget(self, source: str, service: str) -> None:
        self.latest.pop((source, service), None)
        for key in [
            k for k, a in self.active.items() if (a.source, a.service) == (source, service)
        ]:
            del self.active[key]

    def evaluate(
        self, now: float, only: set[tuple[str, str]] | None = None
    ) -> tuple[list[Alarm], list[Alarm]]:
        """Bring the active set up to date, for every service or `only` these
        (source, service) pairs (after a batch: O(batch), not O(cluster)); returns
        (raised, cleared)."""
        if only is None:
            want = conditions(self.latest.values(), now, self.missed)
            mine = self.active
        else:
            want = conditions((self.latest[k] for k in only if k in self.latest), now, self.missed)
            mine = {k: a for k, a in self.active.items() if (a.source, a.service) in only}
        raised = [a for k, a in want.items() if k not in self.active]
        cleared = [a for k, a in mine.items() if k not in want]
        for a in raised:
            self.active[a.key] = a
        for a in cleared:
            del self.active[a.key]
        return raised, cleared
