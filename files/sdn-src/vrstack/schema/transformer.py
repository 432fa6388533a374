"""Keep the derived objects in the config API equal to what the config compiles to.

The transformer mirrors the types it reads through the watch feed and, after every
batch of changes, compiles the whole config and writes only the differences, with
If-Match on updates. Its own writes come back as watch events and compile to the same
result, so the loop settles; replaying the whole config writes nothing.

It also keeps its own `service-health` object (`schema-<host>`) current: written only
when its status or detail changes, so a restart in the same state writes nothing either.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from typing import Any

import aiohttp

from ..config.client import ApiError, ConfigClient, Mirror
from ..config.model import RESOURCES
from .compiler import NotReady, compile_config
from .secgroups import compile_port_acls

log = logging.getLogger(__name__)
JSON = dict[str, Any]
INPUTS = (
    "global-config",
    "virtual-network",
    "network-policy",
    "security-group",
    "virtual-machine-interface",
    "logical-router",
)
OUTPUTS = ("routing-instance", "access-control-list")
HEALTH = "service-health"


def _fields(rtype: str, obj: JSON) -> JSON:
    return {k: obj[k] for k in RESOURCES[rtype].fields if k in obj}


class SchemaTransformer:
    def __init__(self, client: ConfigClient, host: str | None = None) -> None:
        self.client = client
        self.host = host or socket.gethostname()
        self.mirror = Mirror(client, (*INPUTS, *OUTPUTS, HEALTH))
        self.writes = 0  # derived objects created or updated since start
        self.reconciles = 0
        self.last_error: str | None = None
        self.last_ok: float | None = None

    def health(self) -> dict[str, Any]:
        ok = self.mirror.connected and self.last_error is None and self.last_ok is not None
        return {
            "status": "ok" if ok else "degraded",
            "connected": self.mirror.connected,
            "revision": self.mirror.revision,
            "writes": self.writes,
            "reconciles": self.reconciles,
            "last_error": self.last_error,
        }

    async def reconcile(self) -> int:
        """Write every derived object that differs from the compiled config; returns writes."""
        objs = self.mirror.objects
        gc = next((o for o in objs["global-config"].values() if o["name"] == "default"), None)
        try:
            desired = compile_config(
                gc,
                objs["virtual-network"],
                objs["network-policy"],
                objs["routing-instance"],
                objs["logical-router"],
            )
        except NotReady as exc:
            self.last_error = str(exc)
            log.warning("cannot compile yet", extra={"reason": str(exc)})
            await self.report("degraded", f"cannot compile: {exc}")
            return 0
        # Derived objects are found by (parent, name), the key the API keeps unique, so an
        # object someone else edited is rewritten rather than collided with.
        by_key: dict[str, dict[tuple[str, str], JSON]] = {
            rtype: {(o["parent_uuid"], o["name"]): o for o in objs[rtype].values()}
            for rtype in ("routing-instance", "access-control-list")
        }
        writes = 0
        for uid, d in sorted(desired.items()):
            for rtype, want in (
                ("routing-instance", d.routing_instance),
                ("access-control-list", d.acl),
            ):
                have = by_key[rtype].get((uid, d.name))
                writes += await self._write(rtype, d.name, uid, have, want)
        wanted = compile_port_acls(objs["virtual-machine-interface"], objs["security-group"])
        acls = by_key["access-control-list"]
        for p in sorted(wanted.values(), key=lambda p: p.port):
            have = acls.get((p.network, p.name))
            writes += await self._write("access-control-list", p.name, p.network, have, p.acl)
        keep = {(p.network, p.name) for p in wanted.values()}
        keep |= {(uid, d.name) for uid, d in desired.items()}
        for key, have in sorted(acls.items()):
            if "virtual_machine_interface" in have and key not in keep:
                try:
                    await self.client.delete("access-control-list", have["uuid"], have["version"])
                except ApiError as exc:
                    if exc.status != 404:  # gone with its network: nothing left to do
                        raise
                self.mirror.objects["access-control-list"].pop(have["uuid"], None)
                writes += 1
                log.info(
                    "port ACL deleted",
                    extra={"port": have["virtual_machine_interface"], "uuid": have["uuid"]},
                )
        self.writes += writes
        self.reconciles += 1
        self.last_error = None
        self.last_ok = time.time()
        await self.report("up", "")
        return writes

    async def _write(
        self, rtype: str, name: str, parent: str, have: JSON | None, want: JSON
    ) -> int:
        """Create or update one derived object to `want`; 1 if it was written."""
        if have is None:
            obj = await self.client.create(rtype, {"name": name, "parent_uuid": parent, **want})
        elif _fields(rtype, have) != want:
            obj = await self.client.update(rtype, have["uuid"], want, have["version"])
        else:
            return 0
        # Keep the mirror ahead of the watch so the next compile sees the write.
        self.mirror.objects[rtype][obj["uuid"]] = obj
        log.info(
            "derived object written",
            extra={"type": rtype, "parent": parent, "uuid": obj["uuid"], "version": obj["version"]},
        )
        return 1

    async def report(self, status: str, detail: str) -> None:
        """Write this service's health object when its status or detail changed."""
        name = f"schema-{self.host}"[:128]
        want = {"service": "schema", "host": self.host, "status": status, "detail": detail}
        have = next((o for o in self.mirror.objects[HEALTH].values() if o["name"] == name), None)
        if have is not None and {k: have.get(k) for k in want} == want:
            return
        body = {**want, "reported_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        if have is None:
            obj = await self.client.create(HEALTH, {"name": name, **body})
        else:
            obj = await self.client.update(HEALTH, have["uuid"], body, have["version"])
        self.mirror.objects[HEALTH][obj["uuid"]] = obj

    async def run(self, stop: asyncio.Event) -> None:
        """Follow the watch feed and reconcile after each batch, until `stop` is set."""
        while not stop.is_set():
            try:
                async for _batch in self.mirror.follow(stop):
                    await self.reconcile()
            except (ApiError, aiohttp.ClientError, TimeoutError, OSError) as exc:
                # A racing change (409/412) or a lost connection: list everything again
                # and reconcile from fresh state.
                self.last_error = str(exc)
                self.mirror.connected = False
                log.warning("reconcile failed; resyncing", extra={"error": str(exc)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), 1.0)
