"""Objects on top of the store: create/read/update/delete with integrity, IPAM, watch.

Key layout (all JSON values):
  obj/<type>/<uuid>                the object; its mod_rev is its version (ETag)
  fqn/<type>/<fq name joined by /> -> {"uuid"}: names are unique per parent
  child/<parent>/<type>/<uuid>     parent -> child index
  backref/<target>/<type>/<uuid>   who references <target>
  touch/<uuid>                     rewritten whenever an edge to <uuid> is added or removed
  ip/<network>/<address>           -> {"owner", "type"}: an address in use

A write reads what it depends on, then commits one store transaction that compares the
mod_rev of everything it read: a racing writer makes it retry from the start, so no
request is half-applied and no check is stale. Deleting X compares touch/X, which every
new reference or child of X rewrites, so "no references" cannot become false meanwhile.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import ipaddress
import os
import random
import time
import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Any

from . import ipam
from .fields import CIDR, IP, MAC, Bool, Enum, FieldError, Int, Ref, Str
from .model import NAME, RESOURCES, Resource, refs_of
from .routers import check_router
from .store import JSON, KV, Conflict, Event, Store

MAX_RETRIES = 30
# Fields the server sets; a client may send them back on PUT and they are ignored.
READ_ONLY = ("uuid", "type", "fq_name", "parent_type", "version", "created_at", "updated_at")
FILTERABLE = (Str, Int, Bool, Ref, Enum, IP, MAC, CIDR)


def obj_key(rtype: str, uid: str) -> str:
    return f"obj/{rtype}/{uid}"


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _with_version(kv: KV) -> JSON:
    return {**kv.value, "version": kv.mod_rev}


@dataclass
class Plan:
    """What one write transaction compares, puts and deletes."""

    compares: dict[str, int] = field(default_factory=dict)
    puts: dict[str, JSON] = field(default_factory=dict)
    deletes: list[str] = field(default_factory=list)
    allocated: list[str] = field(default_factory=list)  # ip keys picked by this server
    # First attempt: skip reads whose only purpose is a precise error message, and take
    # the next address without probing; the compares catch any clash, and the retry
    # (not optimistic) reads everything and reports it precisely.
    optimistic: bool = False


class ConfigDB:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._ip_hint: dict[tuple[str, str], int] = {}
        # Addresses picked by requests not yet committed: concurrent requests skip them.
        self._pending: set[str] = set()

    # ---- reads ---------------------------------------------------------------------

    async def get(self, res: Resource, uid: str) -> JSON:
        kv = await self.store.get(obj_key(res.name, uid))
        if kv is None:
            raise FieldError("uuid", f"no {res.name} with uuid {uid}", 404)
        return _with_version(kv)

    async def list_page(
        self, res: Resource, filters: dict[str, str], limit: int, cursor: str | None
    ) -> tuple[list[JSON], str | None, int]:
        """One page of objects matching `filters`; returns (items, next cursor, revision)."""
        revision = await self.store.revision()
        parent = filters.pop("parent_uuid", None)
        if parent is not None:
            if not res.parent:
                raise FieldError("parent_uuid", f"a {res.name} has no parent")
            parent = Ref(target=res.parent).check(parent, "parent_uuid")
        checks = {k: self._filter_value(res, k, v) for k, v in filters.items()}
        prefix = f"child/{parent}/{res.name}/" if parent else f"obj/{res.name}/"
        after = ""
        if cursor:
            try:
                after = base64.urlsafe_b64decode(cursor.encode()).decode()
            except (binascii.Error, UnicodeDecodeError):
                raise FieldError("cursor", "is not a cursor this server returned") from None
            if not after.startswith(prefix):
                raise FieldError("cursor", "belongs to another listing")
        items: list[JSON] = []
        batch = max(limit, 100)
        exhausted = False
        while len(items) < limit and not exhausted:
            kvs = await self.store.range(prefix, after, batch)
            exhausted = len(kvs) < batch
            # Through the child index: fetch the page's objects in one round trip.
            children = (
                await self.store.get_many(
                    [obj_key(res.name, kv.key.rsplit("/", 1)[1]) for kv in kvs]
                )
                if parent
                else {}
            )
            for i, kv in enumerate(kvs):
                after = kv.key
                obj_kv: KV | None = kv
                if parent:
                    obj_kv = children[obj_key(res.name, kv.key.rsplit("/", 1)[1])]
                if obj_kv is None or not all(obj_kv.value.get(k) == v for k, v in checks.items()):
                    continue
                items.append(_with_version(obj_kv))
                if len(items) == limit:
                    exhausted = exhausted and i == len(kvs) - 1
                    break
        next_cursor = None if exhausted else base64.urlsafe_b64encode(after.encode()).decode()
        return items, next_cursor, revision

    @staticmethod
    def _filter_value(res: Resource, name: str, text: str) -> Any:
        if name == "name":
            return text
        spec = res.fields.get(name)
        if spec is None or not isinstance(spec, FILTERABLE):
            raise FieldError(name, f"is not a field of {res.name} that lists can filter on")
        if isinstance(spec, Bool):
            if text not in ("true", "false"):
                raise FieldError(name, "must be true or false")
            return text == "true"
        if isinstance(spec, Int):
            try:
                return int(text)
            except ValueError:
                raise FieldError(name, "must be an integer") from None
        # Normalise like stored values (compressed IPv6, lower-case MAC, UUID form).
        return spec.check(text, name)

    # ---- writes --------------------------------------------------------------------

    async def _retrying(self, attempt: Any, *args: Any) -> JSON:
        for n in range(MAX_RETRIES):
            try:
                result: JSON = await attempt(*args, optimistic=n == 0)
                return result
            except Conflict:
                # Spread the retries of writers that collided.
                await asyncio.sleep(random.uniform(0, 0.001 * n))
        raise FieldError("", "too many concurrent changes to the same objects; retry", 409)

    async def create(self, res: Resource, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise FieldError("", "the body must be a JSON object")
        body = dict(body)
        if body.get("name") is None:
            raise FieldError("name", "is required")
        name = NAME.check(body.pop("name"), "name")
        # Absent and null differ: the document allows leaving `uuid` out, never null.
        if "uuid" in body and body["uuid"] is None:
            raise FieldError("uuid", "must be a uuid string (leave it out to get a new one)")
        if not res.parent and "parent_uuid" in body:
            raise FieldError("parent_uuid", f"a {res.name} has no parent")
        parent_uuid = body.pop("parent_uuid", None)
        uid = body.pop("uuid", None)
        uid = Ref(target=res.name).check(uid, "uuid") if uid is not None else str(uuidlib.uuid4())
        if res.parent and parent_uuid is None:
            raise FieldError("parent_uuid", f"is required: the uuid of the {res.parent}")
        if parent_uuid is not None:
            parent_uuid = Ref(target=res.parent or "").check(parent_uuid, "parent_uuid")
        if res.name == "global-config" and name != "default":
            raise FieldError("name", "the global-config object is named default")
        fields = res.validate(body)
        return await self._retrying(self._create_once, res, uid, name, parent_uuid, fields)

    async def _create_once(
        self,
        res: Resource,
        uid: str,
        name: str,
        parent_uuid: str | None,
        fields: JSON,
        optimistic: bool = False,
    ) -> JSON:
        plan = Plan(optimistic=optimistic)
        try:
            return await self._create_plan(res, uid, name, parent_uuid, fields, plan)
        finally:
            # Addresses picked but not committed go back to the pool.
            self._pending.difference_update(plan.allocated)

    async def _create_plan(
        self,
        res: Resource,
        uid: str,
        name: str,
        parent_uuid: str | None,
        fields: JSON,
        plan: Plan,
    ) -> JSON:
        # Read what the checks need in one round trip; the transaction compares it all.
        wanted = [obj_key(t, u) for _, t, u in refs_of(res, fields)]
        if parent_uuid is not None:
            wanted.append(obj_key(res.parent or "", parent_uuid))
        wanted.append(obj_key(res.name, uid))
        reads = await self.store.get_many(wanted)
        fq_name = [name]
        if parent_uuid is not None:
            assert res.parent is not None
            parent = reads[obj_key(res.parent, parent_uuid)]
            if parent is None:
                raise FieldError("parent_uuid", f"no {res.parent} with uuid {parent_uuid}", 409)
            plan.compares[parent.key] = parent.mod_rev
            fq_name = [*parent.value["fq_name"], name]
            plan.puts[f"child/{parent_uuid}/{res.name}/{uid}"] = {}
            plan.puts[f"touch/{parent_uuid}"] = {"by": uid}
        obj: JSON = {
            "uuid": uid,
            "type": res.name,
            "name": name,
            "fq_name": fq_name,
            "parent_type": res.parent,
            "parent_uuid": parent_uuid,
            "created_at": _now(),
            **_copy(fields),
        }
        obj["updated_at"] = obj["created_at"]
        targets = await self._check_refs(res, obj, plan, old_refs=set(), reads=reads)
        await self._prepare(res, obj, targets, plan, old_claims={})
        plan.compares[obj_key(res.name, uid)] = 0
        plan.compares[self._fqn_key(res.name, fq_name)] = 0
        if not plan.optimistic and await self.store.get(self._fqn_key(res.name, fq_name)):
            raise FieldError("name", f"a {res.name} named {'/'.join(fq_name)} exists", 409)
        if reads[obj_key(res.name, uid)] is not None:
            raise FieldError("uuid", f"a {res.name} with uuid {uid} exists", 409)
        plan.puts[obj_key(res.name, uid)] = obj
        plan.puts[self._fqn_key(res.name, fq_name)] = {"uuid": uid}
        return await self._commit(plan, obj)

    async def _commit(self, plan: Plan, obj: JSON) -> JSON:
        rev = await self._txn(plan)
        return {**obj, "version": rev}

    async def _txn(self, plan: Plan) -> int:
        # A key is written at most once per transaction (etcd refuses duplicates);
        # a delete wins over a put of the same key.
        deletes = list(dict.fromkeys(plan.deletes))
        puts = {k: v for k, v in plan.puts.items() if k not in set(deletes)}
        return await self.store.txn(plan.compares, puts, deletes)

    async def update(self, res: Resource, uid: str, body: Any, if_match: int | None) -> JSON:
        if not isinstance(body, dict):
            raise FieldError("", "the body must be a JSON object")
        return await self._retrying(self._update_once, res, uid, body, if_match)

    async def _update_once(
        self, res: Resource, uid: str, body: JSON, if_match: int | None, optimistic: bool = False
    ) -> JSON:
        plan = Plan(optimistic=optimistic)
        try:
            return await self._update_plan(res, uid, body, if_match, plan)
        finally:
            self._pending.difference_update(plan.allocated)

    async def _update_plan(
        self, res: Resource, uid: str, body: JSON, if_match: int | None, plan: Plan
    ) -> JSON:
        kv = await self.store.get(obj_key(res.name, uid))
        if kv is None:
            raise FieldError("uuid", f"no {res.name} with uuid {uid}", 404)
        _check_if_match(kv, if_match)
        old = kv.value
        body = {k: v for k, v in body.items() if k not in READ_ONLY}
        for fixed in ("name", "parent_uuid"):
            if fixed in body and body.pop(fixed) != old[fixed]:
                raise FieldError(fixed, "cannot be changed; create a new object instead")
        fields = res.validate(body)
        for s_old, s_new in zip(
            ipam.slots(res.name, old), ipam.slots(res.name, fields), strict=False
        ):
            if s_old.network != s_new.network:
                raise FieldError(
                    "virtual_network" if res.name != "floating-ip" else "floating_network",
                    "cannot be changed",
                )
        obj = {k: old[k] for k in READ_ONLY if k in old and k != "version"}
        obj.update(name=old["name"], parent_uuid=old["parent_uuid"], **_copy(fields))
        obj["updated_at"] = _now()
        plan.compares[kv.key] = kv.mod_rev
        old_refs = {(t, u) for _, t, u in refs_of(res, old)}
        targets = await self._check_refs(res, obj, plan, old_refs)
        for _t, u in old_refs - {(t, u) for _, t, u in refs_of(res, obj)}:
            plan.deletes.append(f"backref/{u}/{res.name}/{uid}")
            plan.puts[f"touch/{u}"] = {"by": uid}
        # Keep addresses the object already holds: unchanged fixed IPs stay put.
        old_claims = ipam.claims(res.name, old)
        await self._prepare(res, obj, targets, plan, old_claims)
        for key in old_claims.keys() - ipam.claims(res.name, obj).keys():
            plan.deletes.append(key)
        if res.name == "virtual-network":
            # A port created meanwhile rewrites touch/<network>: its address is then checked too.
            touch = await self.store.get(f"touch/{uid}")
            plan.compares[f"touch/{uid}"] = touch.mod_rev if touch else 0
            await self._check_subnets_in_use(uid, obj)
        plan.puts[kv.key] = obj
        return await self._commit(plan, obj)

    async def delete(self, res: Resource, uid: str, if_match: int | None) -> None:
        await self._retrying(self._delete_once, res, uid, if_match)

    async def _delete_once(
        self, res: Resource, uid: str, if_match: int | None, optimistic: bool = False
    ) -> JSON:
        kv = await self.store.get(obj_key(res.name, uid))
        if kv is None:
            raise FieldError("uuid", f"no {res.name} with uuid {uid}", 404)
        _check_if_match(kv, if_match)
        touch = await self.store.get(f"touch/{uid}")
        plan = Plan()
        plan.compares[f"touch/{uid}"] = touch.mod_rev if touch else 0
        users = await self.store.range(f"backref/{uid}/", limit=10)
        if users:
            names = ", ".join(u.key.split("/", 2)[2] for u in users)
            raise FieldError("", f"{res.name} {uid} is still referenced by: {names}", 409)
        for child in await self.store.range(f"child/{uid}/", limit=100_000):
            ctype, cuid = child.key.split("/")[2:4]
            if not RESOURCES[ctype].derived:
                raise FieldError("", f"{res.name} {uid} still has children: {ctype} {cuid}", 409)
            # Derived objects (routing instances, ACLs) go with their network.
            ckv = await self.store.get(obj_key(ctype, cuid))
            if ckv is not None:
                self._plan_delete(RESOURCES[ctype], ckv, plan)
        self._plan_delete(res, kv, plan)
        plan.deletes.append(f"touch/{uid}")
        await self._txn(plan)
        return {}

    def _plan_delete(self, res: Resource, kv: KV, plan: Plan) -> None:
        obj, uid = kv.value, kv.value["uuid"]
        plan.compares[kv.key] = kv.mod_rev
        plan.deletes += [kv.key, self._fqn_key(res.name, obj["fq_name"])]
        if obj.get("parent_uuid"):
            plan.deletes.append(f"child/{obj['parent_uuid']}/{res.name}/{uid}")
            plan.puts[f"touch/{obj['parent_uuid']}"] = {"by": uid}
        for _, _, target in refs_of(res, obj):
            plan.deletes.append(f"backref/{target}/{res.name}/{uid}")
            plan.puts[f"touch/{target}"] = {"by": uid}
        plan.deletes += list(ipam.claims(res.name, obj))

    # ---- helpers -------------------------------------------------------------------

    @staticmethod
    def _fqn_key(rtype: str, fq_name: list[str]) -> str:
        return f"fqn/{rtype}/{'/'.join(fq_name)}"

    async def _check_refs(
        self,
        res: Resource,
        obj: JSON,
        plan: Plan,
        old_refs: set[tuple[str, str]],
        reads: dict[str, KV | None] | None = None,
    ) -> dict[str, JSON]:
        """Check every new reference exists; returns the referenced objects by uuid."""
        targets: dict[str, JSON] = {}
        reads = reads or {}
        for path, ttype, tuuid in refs_of(res, obj):
            if tuuid in targets:
                continue
            key = obj_key(ttype, tuuid)
            kv = reads[key] if key in reads else await self.store.get(key)
            if kv is None:
                raise FieldError(path, f"no {ttype} with uuid {tuuid}", 409)
            targets[tuuid] = kv.value
            if (ttype, tuuid) not in old_refs:
                plan.compares[kv.key] = kv.mod_rev
                plan.puts[f"backref/{tuuid}/{res.name}/{obj['uuid']}"] = {}
                plan.puts[f"touch/{tuuid}"] = {"by": obj["uuid"]}
        return targets

    async def _prepare(
        self,
        res: Resource,
        obj: JSON,
        targets: dict[str, JSON],
        plan: Plan,
        old_claims: dict[str, str],
    ) -> None:
        """Type-specific rules and defaults, then address allocation."""
        if res.name == "virtual-machine-interface" and "mac_address" not in obj:
            obj["mac_address"] = "02:" + ":".join(f"{b:02x}" for b in os.urandom(5))
        if res.name == "floating-ip":
            if not targets[obj["floating_network"]].get("external"):
                raise FieldError("floating_network", "must be an external network", 409)
            vmi = targets.get(obj.get("virtual_machine_interface", ""))
            if vmi is not None:
                fixed = [f["ip_address"] for f in vmi.get("fixed_ips", [])]
                if "fixed_ip_address" not in obj and fixed:
                    obj["fixed_ip_address"] = fixed[0]
                elif obj.get("fixed_ip_address") not in fixed:
                    raise FieldError("fixed_ip_address", "is not one of the port's fixed IPs")
        if res.name == "logical-router":
            check_router(obj, targets)
        if res.name == "instance-ip" and "virtual_machine_interface" in obj:
            port = targets[obj["virtual_machine_interface"]]
            if port["virtual_network"] != obj["virtual_network"]:
                raise FieldError(
                    "virtual_machine_interface",
                    "the port is on another network than virtual_network",
                    409,
                )
        chosen: set[str] = set()
        for slot in ipam.slots(res.name, obj):
            network = targets[slot.network]
            subnet = ipam.subnet_for(network, slot)
            if slot.subnet_key:
                slot.holder[slot.subnet_key] = subnet["cidr"]
            path = (slot.path + "." if slot.path else "") + slot.addr_key
            addr = slot.holder.get(slot.addr_key)
            requested = addr is not None
            if addr is None:
                addr = await self._allocate(slot.network, subnet, chosen, plan)
                if addr is None:
                    raise FieldError(path, f"subnet {subnet['cidr']} has no free address", 409)
                slot.holder[slot.addr_key] = addr
            key = ipam.ip_key(slot.network, addr)
            if key in chosen:
                raise FieldError(path, f"{addr} is given twice")
            chosen.add(key)
            if key in old_claims:
                continue
            # An address we picked that another server takes meanwhile fails the compare
            # below and the request retries with another; a requested one in use is a 409.
            holder = await self.store.get(key) if requested and not plan.optimistic else None
            if holder is not None:
                raise FieldError(
                    path, f"{addr} is in use by {holder.value['type']} {holder.value['owner']}", 409
                )
            plan.compares[key] = 0
            plan.puts[key] = {"owner": obj["uuid"], "type": res.name}

    async def _allocate(
        self, network: str, subnet: JSON, chosen: set[str], plan: Plan
    ) -> str | None:
        """The next free address after the last one this server handed out."""
        hint_key = (network, subnet["cidr"])
        start = self._ip_hint.get(hint_key, 0)
        used: set[str] | None = None
        for probes, addr in enumerate(ipam.candidates(subnet, start)):
            key = ipam.ip_key(network, str(addr))
            if key in chosen or key in self._pending:
                continue
            self._pending.add(key)
            plan.allocated.append(key)
            if probes == 32 and used is None:
                # A crowded pool: read every address in use once instead of probing each.
                used = {kv.key for kv in await self.store.range(f"ip/{network}/", limit=10**7)}
            if plan.optimistic:
                taken = False  # the transaction's compare checks it
            elif used is not None:
                taken = key in used
            else:
                taken = await self.store.get(key) is not None
            if not taken:
                self._ip_hint[hint_key] = start + probes + 1
                return str(addr)
            self._pending.discard(key)
            plan.allocated.remove(key)
        return None

    async def _check_subnets_in_use(self, network: str, obj: JSON) -> None:
        nets = [ipaddress.ip_network(s["cidr"]) for s in obj.get("subnets", [])]
        for kv in await self.store.range(f"ip/{network}/", limit=10**7):
            addr = ipaddress.ip_address(kv.key.rsplit("/", 1)[1])
            if not any(addr in n for n in nets):
                raise FieldError(
                    "subnets",
                    f"{addr} is in use by {kv.value['type']} "
                    f"{kv.value['owner']} and would be outside every subnet",
                    409,
                )

    # ---- watch ---------------------------------------------------------------------

    async def watch(
        self, since: int, timeout: float, limit: int, types: set[str] | None = None
    ) -> tuple[list[JSON], int]:
        """Object changes after `since`, only of `types` if given; returns (events, the
        revision to resume from). Changes of other types advance that revision but do
        not end the wait."""
        deadline = time.monotonic() + timeout
        while True:
            remaining = max(0.0, deadline - time.monotonic())
            events = await self.store.changes(since, remaining, limit)
            out = [_event(ev) for ev in events]
            if types is not None:
                out = [ev for ev in out if ev["type"] in types]
            since = events[-1].revision if events else since
            if out or not events or remaining <= 0:
                return out, since


def _event(ev: Event) -> JSON:
    _, rtype, uid = ev.key.split("/", 2)
    if ev.value is None:
        return {
            "revision": ev.revision,
            "op": "delete",
            "type": rtype,
            "uuid": uid,
            "object": ev.prev,
        }
    return {
        "revision": ev.revision,
        "op": "put",
        "type": rtype,
        "uuid": uid,
        "object": {**ev.value, "version": ev.revision},
    }


def _copy(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


def _check_if_match(kv: KV, if_match: int | None) -> None:
    if if_match is not None and if_match != kv.mod_rev:
        raise FieldError("If-Match", f"the object is at version {kv.mod_rev}, not {if_match}", 412)
