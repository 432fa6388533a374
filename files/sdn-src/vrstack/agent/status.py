"""Port states reported to the config API (`port-state`, uuid = the port's uuid).

The agent reports `up` once a port is attached to its tap and programmed, `down` while
it waits (for the tap, or for its network's routing instance), and deletes the object
when the port goes. Neutron's ML2 driver watches these objects and turns `up` into
`provisioning_complete`, which sends Nova `network-vif-plugged`.

Another compute may hold the same port during a live migration: an agent rewrites a
state that another virtual-router wrote only to report `up`, and deletes only its own.
A failed report is logged and retried with backoff (1 s doubling to 30 s).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass

import aiohttp

from ..config.client import ApiError, ConfigClient

log = logging.getLogger(__name__)
RTYPE = "port-state"
BACKOFF_MAX = 30.0


@dataclass(frozen=True)
class PortState:
    status: str  # "up" or "down"
    tap: str = ""
    detail: str = ""


def reportable(port_id: str) -> bool:
    """Only ports named by a uuid (Neutron's) can have a state object."""
    try:
        return str(uuid.UUID(port_id)) == port_id.lower()
    except ValueError:
        return False


class StatusReporter:
    """Keeps the config API's port-state objects equal to `want` (set by the agent)."""

    def __init__(self, client: ConfigClient, name: str) -> None:
        self.client = client
        self.name = name
        self.want: dict[str, PortState] = {}
        self.reported: dict[str, PortState] = {}
        self._changed = asyncio.Event()
        self._listed = False  # our objects listed once (ports gone while we were down)
        self.counters = {"status_reports": 0, "status_errors": 0}
        self.last_error = ""

    def set(self, want: dict[str, PortState]) -> None:
        want = {pid: st for pid, st in want.items() if reportable(pid)}
        if want != self.want:
            self.want = want
            self._changed.set()

    async def run(self, stop: asyncio.Event) -> None:
        delay = 1.0
        self._changed.set()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), 5.0)
                if stop.is_set():
                    break
                self._changed.clear()
                try:
                    await self.sync()
                    delay = 1.0
                except (ApiError, aiohttp.ClientError, OSError, TimeoutError) as exc:
                    self.counters["status_errors"] += 1
                    self.last_error = str(exc)
                    log.warning(
                        "port state report failed; retrying",
                        extra={"error": str(exc), "retry_in": delay},
                    )
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), delay)
                    delay = min(delay * 2, BACKOFF_MAX)
                    self._changed.set()
        finally:
            await self.client.close()

    async def sync(self) -> None:
        """Write what differs from what was last reported; delete what went."""
        if not self._listed:
            mine, _ = await self.client.list_all(RTYPE, virtual_router=self.name)
            self.reported = {
                o["uuid"]: PortState(o["status"], o.get("tap", ""), o.get("detail", ""))
                for o in mine
            }
            self._listed = True
        for pid, st in sorted(self.want.items()):
            if self.reported.get(pid) != st:
                await self._put(pid, st)
                self.reported[pid] = st
        for pid in sorted(set(self.reported) - set(self.want)):
            await self._delete(pid)
            del self.reported[pid]

    async def _put(self, pid: str, st: PortState) -> None:
        body = {
            "virtual_router": self.name,
            "status": st.status,
            "tap": st.tap,
            "detail": st.detail,
            "reported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        for _ in range(5):  # bounded: a concurrent writer moves the version
            have = await self.client.get(RTYPE, pid)
            try:
                if have is None:
                    await self.client.create(RTYPE, {"uuid": pid, "name": pid, **body})
                elif have["virtual_router"] != self.name and st.status != "up":
                    return  # another compute has the port (a migration): its report stands
                else:
                    await self.client.update(RTYPE, pid, body, version=have["version"])
                self.counters["status_reports"] += 1
                log.info("port state reported", extra={"port": pid, "status": st.status})
                return
            except ApiError as exc:
                if exc.status not in (409, 412):
                    raise
        raise ApiError(412, {"error": "changed by others 5 times in a row"}, "PUT", RTYPE)

    async def _delete(self, pid: str) -> None:
        have = await self.client.get(RTYPE, pid)
        if have is None or have["virtual_router"] != self.name:
            return
        try:
            await self.client.delete(RTYPE, pid, version=have["version"])
        except ApiError as exc:
            if exc.status not in (404, 412):  # gone, or another compute took it over
                raise
