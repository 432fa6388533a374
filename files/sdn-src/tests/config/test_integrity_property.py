"""Random sequences of writes keep every index consistent with the objects.

Hypothesis generates creates, updates and deletes of projects, networks, ports,
instance-ips and policies; a small reference model predicts which must succeed and which
must be refused (409). After each sequence the store's indexes are checked against the
objects: names, parent/child and reference edges, and addresses in use.
"""

from __future__ import annotations

import asyncio
import ipaddress
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vrstack.config.fields import FieldError
from vrstack.config.model import RESOURCES, refs_of
from vrstack.config.objects import ConfigDB
from vrstack.config.store_sqlite import SQLiteStore

R = RESOURCES
KINDS = ["virtual-machine-interface", "instance-ip", "network-policy", "virtual-network", "project"]
OPS = st.lists(
    st.tuples(
        st.sampled_from(
            ["project", "network", "port", "iip", "policy", "attach", "delete", "delete", "shrink"]
        ),
        st.integers(0, 5),
        st.integers(0, 5),
        st.integers(2, 14),
    ),
    min_size=5,
    max_size=40,
)


async def run_ops(db: ConfigDB, ops: list[tuple[str, int, int, int]]) -> None:
    objs: list[tuple[str, dict[str, Any]]] = []  # (type, obj) still alive, per our model

    def pick(rtype: str, i: int) -> dict[str, Any] | None:
        alive = [o for t, o in objs if t == rtype]
        return alive[i % len(alive)] if alive else None

    def users(uid: str) -> list[str]:
        out = []
        for t, o in objs:
            if o.get("parent_uuid") == uid or uid in {u for _, _, u in refs_of(R[t], o)}:
                out.append(o["uuid"])
        return out

    for n, (op, i, j, host) in enumerate(ops):
        if op == "project":
            objs.append(("project", await db.create(R["project"], {"name": f"p{n}"})))
        elif op == "network" and (p := pick("project", i)):
            net = await db.create(
                R["virtual-network"],
                {"name": f"n{n}", "parent_uuid": p["uuid"], "subnets": [{"cidr": "198.18.9.0/28"}]},
            )
            objs.append(("virtual-network", net))
        elif op in ("port", "iip") and (net := pick("virtual-network", i)):
            p = next(o for t, o in objs if o["uuid"] == net["parent_uuid"])
            addr = str(ipaddress.ip_address("198.18.9.0") + host)
            held = {a for t, o in objs for a in _addrs(t, o, net["uuid"])}
            try:
                if op == "port":
                    obj = await db.create(
                        R["virtual-machine-interface"],
                        {"name": f"v{n}", "parent_uuid": p["uuid"], "virtual_network": net["uuid"]},
                    )
                    objs.append(("virtual-machine-interface", obj))
                else:
                    obj = await db.create(
                        R["instance-ip"],
                        {"name": f"i{n}", "virtual_network": net["uuid"], "ip_address": addr},
                    )
                    objs.append(("instance-ip", obj))
                    assert addr not in held
            except FieldError as exc:
                assert exc.status == 409, exc.message
                full = len(held) >= 13  # a /28 has 13 addresses besides network, gateway, broadcast
                assert not net["subnets"] or (op == "iip" and addr in held) or full, (op, held)
        elif (
            op == "policy"
            and (a := pick("virtual-network", i))
            and (b := pick("virtual-network", j))
        ):
            p = next(o for t, o in objs if o["uuid"] == a["parent_uuid"])
            pol = await db.create(
                R["network-policy"],
                {
                    "name": f"pol{n}",
                    "parent_uuid": p["uuid"],
                    "rules": [
                        {
                            "action": "pass",
                            "source": {"network": a["uuid"]},
                            "destination": {"network": b["uuid"]},
                        }
                    ],
                },
            )
            objs.append(("network-policy", pol))
        elif (
            op == "attach"
            and (net := pick("virtual-network", i))
            and (pol := pick("network-policy", j))
        ):
            fresh = await db.get(R["virtual-network"], net["uuid"])
            body = {k: fresh[k] for k in R["virtual-network"].fields if k in fresh}
            body["network_policies"] = [pol["uuid"]]
            updated = await db.update(R["virtual-network"], net["uuid"], body, fresh["version"])
            objs[:] = [(t, updated if o["uuid"] == net["uuid"] else o) for t, o in objs]
        elif op == "shrink" and (net := pick("virtual-network", i)):
            fresh = await db.get(R["virtual-network"], net["uuid"])
            body = {k: fresh[k] for k in R["virtual-network"].fields if k in fresh}
            body["subnets"] = []
            held = [a for t, o in objs for a in _addrs(t, o, net["uuid"])]
            try:
                updated = await db.update(R["virtual-network"], net["uuid"], body, None)
                assert not held
                objs[:] = [(t, updated if o["uuid"] == net["uuid"] else o) for t, o in objs]
            except FieldError as exc:
                assert exc.status == 409 and held
        elif op == "delete" and (o := pick(KINDS[j % len(KINDS)], i)):
            t = KINDS[j % len(KINDS)]
            blocked = users(o["uuid"])
            try:
                await db.delete(R[t], o["uuid"], None)
                assert not blocked
                objs.remove((t, o))
            except FieldError as exc:
                assert exc.status == 409 and blocked, exc.message
    await check_indexes(db, {o["uuid"] for _, o in objs})


def _addrs(rtype: str, obj: dict[str, Any], net: str) -> list[str]:
    if rtype == "virtual-machine-interface" and obj["virtual_network"] == net:
        return [f["ip_address"] for f in obj["fixed_ips"]]
    if rtype == "instance-ip" and obj["virtual_network"] == net:
        return [obj["ip_address"]]
    return []


async def check_indexes(db: ConfigDB, alive: set[str]) -> None:
    store = db.store
    objects = {kv.value["uuid"]: kv.value for kv in await store.range("obj/", limit=10**6)}
    assert set(objects) == alive
    fqns = {kv.key: kv.value["uuid"] for kv in await store.range("fqn/", limit=10**6)}
    assert fqns == {f"fqn/{o['type']}/{'/'.join(o['fq_name'])}": u for u, o in objects.items()}
    children = {kv.key for kv in await store.range("child/", limit=10**6)}
    assert children == {
        f"child/{o['parent_uuid']}/{o['type']}/{u}"
        for u, o in objects.items()
        if o.get("parent_uuid")
    }
    backrefs = {kv.key for kv in await store.range("backref/", limit=10**6)}
    assert backrefs == {
        f"backref/{t}/{o['type']}/{u}"
        for u, o in objects.items()
        for _, _, t in refs_of(R[o["type"]], o)
    }
    ips = {kv.key: kv.value["owner"] for kv in await store.range("ip/", limit=10**6)}
    want = {}
    for u, o in objects.items():
        for a in _addrs(o["type"], o, o.get("virtual_network", "")):
            want[f"ip/{o['virtual_network']}/{a}"] = u
    assert ips == want


@settings(
    max_examples=60, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(ops=OPS)
def test_random_writes_keep_indexes_consistent(ops: list[tuple[str, int, int, int]]) -> None:
    async def main() -> None:
        with tempfile.TemporaryDirectory() as tmp:
            store = SQLiteStore(str(Path(tmp) / "c.db"))
            await store.start()
            try:
                # Start with a project and a network so most sequences reach ports.
                await run_ops(ConfigDB(store), [("project", 0, 0, 2), ("network", 0, 0, 2), *ops])
            finally:
                await store.close()

    asyncio.run(main())
