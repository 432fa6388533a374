"""One project's Keystone token against another project's objects, on the deployed lab
(issue 11, "tests that try to get in"): project A's `member` reads and writes project B's
virtual network and port through the config API, and reads and sends project B's flows
through the analytics API. Every request is refused (403, or 404 as if the object did
not exist), B's objects read the same before and after (with the admin token), and B's
own token sees them, so the refusals are about the project, not a broken object.

Needs the whole lab (the SDN and OpenStack stages) and the admin openrc site.yml writes.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from typing import Any

import test_security as security
from labcloud import Cli
from test_sdn_keystone import network, token_of
from test_security import Lab, call, secrets_file

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition

SETTLE = 30  # seconds for the schema transformer to finish with a new object


def settled(url: str, token: str) -> dict[str, Any]:
    """The object at `url` once two reads a second apart agree (the schema transformer
    may still be adding its derived fields to a new object)."""
    deadline = time.monotonic() + SETTLE
    status, last = call(url, token=token)
    while time.monotonic() < deadline:
        time.sleep(1)
        status, now = call(url, token=token)
        assert status == 200, f"GET {url} with the admin token: {status} {now}"
        if now == last:
            return now
        last = now
    raise AssertionError(f"{url} kept changing for {SETTLE} s: {last}")


def routing_instance(api: str, net: str, token: str) -> str:
    """The name a flow record carries for the network (`project:network:instance`)."""
    deadline = time.monotonic() + SETTLE
    while True:
        status, body = call(f"{api}/routing-instances?parent_uuid={net}", token=token)
        assert status == 200, f"routing instances of {net}: {status} {body}"
        if body["items"]:
            return ":".join(body["items"][0]["fq_name"])
        assert time.monotonic() < deadline, f"network {net} got no routing instance"
        time.sleep(1)


def test_a_project_cannot_touch_another_projects_network_and_port(
    member: Cli, other_member: Cli, lab: Lab
) -> None:
    api = lab.model["endpoints"]["api_url"]
    admin = secrets_file()["sdn_api_admin_token"]
    tag = secrets.token_hex(3)
    mine = network(member, f"xp-a-{tag}")
    net = network(other_member, f"xp-b-{tag}")
    port = str(other_member.ok("port", "create", "--network", net, f"xp-b-{tag}")["id"])
    theirs = {"virtual-networks": net, "virtual-machine-interfaces": port}
    changes = {
        "virtual-networks": {"forwarding_mode": "l2", "external": True},
        "virtual-machine-interfaces": {"device_id": "xp-probe", "port_security_enabled": False},
    }
    before = {c: settled(f"{api}/{c}/{u}", admin) for c, u in theirs.items()}
    project_b = before["virtual-networks"]["parent_uuid"]
    token_a, token_b = token_of(member), token_of(other_member)

    # The member's token works: its own network and B's objects for B.
    assert call(f"{api}/virtual-networks/{mine}", token=token_a)[0] == 200
    for coll, uid in theirs.items():
        status, body = call(f"{api}/{coll}/{uid}", token=token_b)
        assert status == 200, f"project B reading its own {coll}/{uid}: {status} {body}"

    problems = []
    for coll, uid in theirs.items():
        status, body = call(f"{api}/{coll}?limit=1000", token=token_a)
        if status != 200 or uid in {o["uuid"] for o in body["items"]}:
            problems.append(f"A lists {coll}: {status}, B's {uid} in it or no list")
        status, body = call(f"{api}/{coll}?parent_uuid={project_b}&limit=1000", token=token_a)
        if status == 200 and body["items"]:
            problems.append(f"A lists {coll} of B's project: {len(body['items'])} objects")
        for method, payload, allowed in (
            ("GET", None, (404,)),
            ("PUT", changes[coll], (403, 404)),
            ("DELETE", None, (403, 404)),
        ):
            status, body = call(f"{api}/{coll}/{uid}", method, token_a, payload)
            if status not in allowed:
                problems.append(f"A: {method} {coll}/{uid}: {status} {str(body)[:200]}")
    # New objects inside B's project or on B's network.
    for coll, payload in (
        ("virtual-networks", {"name": f"xp-probe-{tag}", "parent_uuid": project_b}),
        (
            "virtual-machine-interfaces",
            {"name": f"xp-probe-{tag}", "parent_uuid": project_b, "virtual_network": net},
        ),
    ):
        status, body = call(f"{api}/{coll}", "POST", token_a, payload)
        if status != 403:
            problems.append(f"A: POST {coll} into B's project: {status} {str(body)[:200]}")
    assert not problems, "; ".join(problems)

    for coll, uid in theirs.items():
        status, after = call(f"{api}/{coll}/{uid}", token=admin)
        assert status == 200, f"{coll}/{uid} is gone after project A's requests: {status}"
        assert after == before[coll], f"{coll}/{uid} changed: {before[coll]} -> {after}"
    for coll in theirs:
        status, body = call(f"{api}/{coll}?name=xp-probe-{tag}", token=admin)
        assert status == 200 and not body["items"], f"A's POST made {coll}: {body}"


def flow(vrf: str, marker: int) -> bytes:
    """One flow record of `vrf`; `marker` (a source port) finds it again."""
    now = time.time()
    rec = {"kind": "flow", "id": uuid.uuid4().hex, "start": now - 5, "end": now, "vrf": vrf,
           "src_ip": "198.19.255.1", "dst_ip": "198.19.255.2", "proto": 6,
           "src_port": marker, "dst_port": 443, "bytes": 1200, "packets": 3,
           "action": "forward"}  # fmt: skip
    return json.dumps(rec).encode()


def test_a_project_cannot_read_or_send_another_projects_flows(
    member: Cli, other_member: Cli, lab: Lab
) -> None:
    api = lab.model["endpoints"]["api_url"]
    analytics = lab.model["endpoints"]["analytics_url"]
    sec = secrets_file()
    tag = secrets.token_hex(3)
    net = network(other_member, f"xp-flows-{tag}")
    vrf = routing_instance(api, net, sec["sdn_api_admin_token"])
    marker = 1024 + secrets.randbelow(60000)
    token_a, token_b = token_of(member), token_of(other_member)

    def count(token: str) -> tuple[int, Any]:
        query = {"table": "flows", "select": ["count()"], "since": "-1h",
                 "where": [{"field": "vrf", "op": "=", "value": vrf},
                           {"field": "src_port", "op": "=", "value": marker}]}  # fmt: skip
        status, body = call(f"{analytics}/query", "POST", token, query)
        if status != 200:
            return status, body
        return status, int(next(iter(body["items"][0].values()))) if body["items"] else 0

    # A sends a flow into B's network: refused and not stored.
    status, body = call(
        f"{analytics}/ingest/xp-probe", "POST", token_a, flow(vrf, marker), "application/x-ndjson"
    )
    assert status == 403, f"A's token sending B's flow: {status} {body}"
    assert count(sec["sdn_analytics_reader_token"]) == (200, 0), "A's refused flow was stored"

    # The admin sends it; B sees it (the query can find one), A does not.
    status, body = call(
        f"{analytics}/ingest/xp-probe", "POST", sec["sdn_analytics_admin_token"],
        flow(vrf, marker), "application/x-ndjson",
    )  # fmt: skip
    assert status in (200, 202), f"ingest with the admin token: {status} {body}"
    # B's routing instances are cached per project for the collector's cache_ttl (60 s).
    deadline = time.monotonic() + 75
    while count(token_b) != (200, 1) and time.monotonic() < deadline:
        time.sleep(1)
    assert count(token_b) == (200, 1), f"project B does not see its flow: {count(token_b)}"
    status, seen = count(token_a)
    assert status == 403 or (status == 200 and seen == 0), f"A reads B's flow: {status} {seen}"
    # Nor without naming the routing instance: A's whole view has no row of B's.
    query = {"table": "flows", "select": ["vrf", "count()"], "group_by": ["vrf"], "since": "-1h"}
    status, body = call(f"{analytics}/query", "POST", token_a, query)
    assert status == 200, f"A's own flow query: {status} {body}"
    assert vrf not in {row.get("vrf") for row in body["items"]}, f"A sees {vrf}: {body['items']}"
    assert count(sec["sdn_analytics_reader_token"]) == (200, 1), "A's requests changed the flows"
