"""Follow the agents' `port-state` objects in the config API (no Neutron import here).

`PortStateWatcher.run` lists every port state once, then long-polls `/watch` for
changes from the revision of that listing, handing each state to a callback (the ML2
driver's, which completes Neutron's provisioning block). Errors are logged and retried
with backoff (1 s doubling to 60 s); a watch position the API no longer has (410) lists
everything again. Every wait is bounded and the loop ends when `stop` is set.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from .configapi import ApiError, SyncConfigClient

LOG = logging.getLogger(__name__)
RTYPE = "port-state"
BACKOFF_MAX = 60.0
JSON = dict[str, Any]


class PortStateWatcher:
    def __init__(
        self, client: SyncConfigClient, on_state: Callable[[JSON], None], poll: float = 25.0
    ) -> None:
        self.client = client
        self.on_state = on_state
        self.poll = poll
        self.since: int | None = None  # None: list everything first
        self.errors = 0

    def step(self) -> int:
        """One listing or one long poll; how many states were handed on."""
        if self.since is None:
            items, revision = self.client.list_with_revision(RTYPE)
            self.since = revision
            LOG.info("vrstack: %d port states listed (revision %d)", len(items), revision)
        else:
            events, self.since = self.client.watch(self.since, [RTYPE], self.poll)
            items = [ev["object"] for ev in events if ev["op"] == "put"]
        for obj in items:
            self._hand_on(obj)
        return len(items)

    def _hand_on(self, obj: JSON) -> None:
        try:
            self.on_state(obj)
        except Exception:  # one port's failure must not stop the others
            LOG.exception("vrstack: port state of %s not applied", obj.get("uuid"))

    def run(self, stop: threading.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            try:
                self.step()
                delay = 1.0
            except ApiError as exc:
                if exc.status == 410:
                    LOG.warning("vrstack: port state watch too old; listing again")
                    self.since = None
                    continue
                self.errors += 1
                LOG.warning("vrstack: port state watch failed (%s); retrying in %.0f s", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, BACKOFF_MAX)
