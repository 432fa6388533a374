"""Config API behaviour over HTTP, on every storage backend."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest

from vrstack.config.client import ApiError, ConfigClient
from vrstack.config.testing import AGENT_TOKEN

pytestmark = pytest.mark.asyncio


async def expect_error(coro: Any, status: int, field: str | None = None) -> dict[str, Any]:
    with pytest.raises(ApiError) as info:
        await coro
    assert info.value.status == status, info.value.body
    if field is not None:
        assert info.value.body.get("field") == field, info.value.body
    return info.value.body


async def revision(c: ConfigClient) -> int:
    return int((await c.request("GET", "/projects", params={"limit": 1}))["revision"])


async def base(c: ConfigClient) -> tuple[dict[str, Any], dict[str, Any]]:
    project = await c.create("project", {"name": "demo"})
    net = await c.create(
        "virtual-network",
        {
            "name": "blue",
            "parent_uuid": project["uuid"],
            "subnets": [{"cidr": "198.18.64.0/29"}],
        },
    )
    return project, net


async def test_create_read_fq_name_and_etag(admin: ConfigClient) -> None:
    project, net = await base(admin)
    assert net["fq_name"] == ["demo", "blue"] and net["parent_uuid"] == project["uuid"]
    assert net["subnets"][0]["gateway"] == "198.18.64.1"
    assert net["forwarding_mode"] == "l2_l3"
    async with admin.session.get(f"{admin.url}/virtual-networks/{net['uuid']}") as resp:
        assert resp.headers["ETag"] == f'"{net["version"]}"'
        assert (await resp.json())["version"] == net["version"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"subnets": [{"cidr": "198.18.64.1/24"}]}, "subnets[0].cidr"),
        ({"subnets": [{"cidr": "198.18.64.0/24", "gateway": "198.18.65.1"}]}, "subnets[0].gateway"),
        (
            {"subnets": [{"cidr": "198.18.64.0/24"}, {"cidr": "198.18.64.128/25"}]},
            "subnets[1].cidr",
        ),
        (
            {
                "subnets": [
                    {
                        "cidr": "198.18.64.0/24",
                        "allocation_pools": [{"start": "198.18.64.10", "end": "198.18.65.5"}],
                    }
                ]
            },
            "subnets[0].allocation_pools[0].end",
        ),
        ({"forwarding_mode": "l4"}, "forwarding_mode"),
        ({"vni": 0}, "vni"),
        ({"colour": "blue"}, "colour"),
        (
            {"subnets": [{"cidr": "198.18.64.0/24", "dhcp": {"dns_servers": ["x"]}}]},
            "subnets[0].dhcp.dns_servers[0]",
        ),
        ({"name": "bad name"}, "name"),
        ({"network_policies": ["not-a-uuid"]}, "network_policies[0]"),
    ],
)
async def test_bad_bodies_name_the_field_and_write_nothing(
    admin: ConfigClient, body: dict[str, Any], field: str
) -> None:
    project = await admin.create("project", {"name": "demo"})
    before = await revision(admin)
    await expect_error(
        admin.create("virtual-network", {"name": "n", "parent_uuid": project["uuid"], **body}),
        400,
        field,
    )
    assert await revision(admin) == before


@pytest.mark.parametrize(
    ("rtype", "body", "field"),
    [
        ("project", {"uuid": None}, "uuid"),  # left out: a new uuid; null: refused
        ("project", {"parent_uuid": None}, "parent_uuid"),  # a project has no parent
        ("project", {"parent_uuid": "00000000-0000-4000-8000-000000000001"}, "parent_uuid"),
    ],
)
async def test_null_is_not_absent(
    admin: ConfigClient, rtype: str, body: dict[str, Any], field: str
) -> None:
    before = await revision(admin)
    await expect_error(admin.create(rtype, {"name": "p", **body}), 400, field)
    assert await revision(admin) == before


async def test_not_json_and_unknown_routes_are_json_errors(admin: ConfigClient) -> None:
    async with admin.session.post(f"{admin.url}/projects", data=b"{nope") as resp:
        assert resp.status == 400 and "JSON" in (await resp.json())["error"]
    async with admin.session.get(f"{admin.url}/no-such-things") as resp:
        assert resp.status == 404 and "error" in await resp.json()
    await expect_error(admin.request("GET", "/projects", params={"limit": "0"}), 400, "limit")


async def test_references_must_exist_and_block_delete(admin: ConfigClient) -> None:
    project, net = await base(admin)
    missing = "00000000-0000-4000-8000-000000000001"
    await expect_error(
        admin.create(
            "virtual-machine-interface",
            {"name": "p", "parent_uuid": project["uuid"], "virtual_network": missing},
        ),
        409,
        "virtual_network",
    )
    await expect_error(
        admin.create("virtual-network", {"name": "x", "parent_uuid": missing}), 409, "parent_uuid"
    )
    port = await admin.create(
        "virtual-machine-interface",
        {"name": "p", "parent_uuid": project["uuid"], "virtual_network": net["uuid"]},
    )
    body = await expect_error(admin.delete("virtual-network", net["uuid"]), 409)
    assert port["uuid"] in body["error"]
    await expect_error(admin.delete("project", project["uuid"]), 409)
    await admin.delete("virtual-machine-interface", port["uuid"])
    await admin.delete("virtual-network", net["uuid"])
    await admin.delete("project", project["uuid"])
    assert await admin.get("project", project["uuid"]) is None


async def test_names_are_unique_per_parent(admin: ConfigClient) -> None:
    project, _ = await base(admin)
    await expect_error(
        admin.create("virtual-network", {"name": "blue", "parent_uuid": project["uuid"]}),
        409,
        "name",
    )
    other = await admin.create("project", {"name": "other"})
    again = await admin.create("virtual-network", {"name": "blue", "parent_uuid": other["uuid"]})
    assert again["fq_name"] == ["other", "blue"]


async def test_if_match_and_concurrent_updates(admin: ConfigClient) -> None:
    _, net = await base(admin)
    body = {"subnets": net["subnets"], "external": True}
    stale = net["version"]
    updated = await admin.update("virtual-network", net["uuid"], body, stale)
    assert updated["version"] > stale and updated["external"] is True
    await expect_error(admin.update("virtual-network", net["uuid"], body, stale), 412, "If-Match")
    await expect_error(admin.delete("virtual-network", net["uuid"], stale), 412, "If-Match")
    # Ten writers start from the same version: exactly one wins, the rest get 412.
    results = await asyncio.gather(
        *(
            admin.update(
                "virtual-network", net["uuid"], {**body, "vni": 100 + i}, updated["version"]
            )
            for i in range(10)
        ),
        return_exceptions=True,
    )
    wins = [r for r in results if isinstance(r, dict)]
    assert len(wins) == 1
    assert all(isinstance(r, ApiError) and r.status == 412 for r in results if r not in wins)
    await expect_error(
        admin.update("virtual-network", net["uuid"], {"name": "renamed"}), 400, "name"
    )


async def test_paging_and_filters(admin: ConfigClient) -> None:
    project, _ = await base(admin)
    other = await admin.create("project", {"name": "other"})
    for i in range(7):
        await admin.create(
            "virtual-network",
            {"name": f"n{i}", "parent_uuid": project["uuid"], "external": i % 2 == 0},
        )
    await admin.create("virtual-network", {"name": "o", "parent_uuid": other["uuid"]})
    seen: list[str] = []
    params: dict[str, Any] = {"limit": 3}
    for _ in range(10):
        page = await admin.request("GET", "/virtual-networks", params=params)
        assert len(page["items"]) <= 3
        seen += [o["name"] for o in page["items"]]
        if not page["next"]:
            break
        params["cursor"] = page["next"]
    assert sorted(seen) == sorted(["blue", "o"] + [f"n{i}" for i in range(7)])
    mine, _ = await admin.list_all("virtual-network", parent_uuid=project["uuid"])
    assert len(mine) == 8 and all(o["parent_uuid"] == project["uuid"] for o in mine)
    ext, _ = await admin.list_all("virtual-network", external="true")
    assert sorted(o["name"] for o in ext) == ["n0", "n2", "n4", "n6"]
    named, _ = await admin.list_all("virtual-network", name="n3")
    assert [o["name"] for o in named] == ["n3"]
    await expect_error(admin.list_all("virtual-network", colour="x"), 400, "colour")
    await expect_error(admin.list_all("virtual-network", parent_uuid="../x"), 400, "parent_uuid")
    await expect_error(admin.list_all("project", parent_uuid=project["uuid"]), 400, "parent_uuid")
    l2, _ = await admin.list_all("virtual-network", forwarding_mode="l2_l3", name="n1")
    assert [o["name"] for o in l2] == ["n1"]
    await expect_error(
        admin.list_all("virtual-network", forwarding_mode="l4"), 400, "forwarding_mode"
    )
    vr = await admin.create("virtual-router", {"name": "c1", "fabric_address": "2001:db8::11"})
    found, _ = await admin.list_all("virtual-router", fabric_address="2001:db8:0::11")
    assert [o["uuid"] for o in found] == [vr["uuid"]]
    await expect_error(
        admin.request("GET", "/virtual-networks", params={"cursor": "zz"}), 400, "cursor"
    )


async def test_ipam_allocates_refuses_duplicates_and_releases(admin: ConfigClient) -> None:
    project, net = await base(admin)  # 198.18.64.0/29: .1 gateway, .2-.6 usable
    ports = [
        await admin.create(
            "virtual-machine-interface",
            {"name": f"p{i}", "parent_uuid": project["uuid"], "virtual_network": net["uuid"]},
        )
        for i in range(3)
    ]
    addrs = [p["fixed_ips"][0]["ip_address"] for p in ports]
    assert addrs == ["198.18.64.2", "198.18.64.3", "198.18.64.4"]
    await expect_error(
        admin.create(
            "instance-ip",
            {"name": "dup", "virtual_network": net["uuid"], "ip_address": "198.18.64.3"},
        ),
        409,
        "ip_address",
    )
    await expect_error(
        admin.create(
            "instance-ip",
            {"name": "out", "virtual_network": net["uuid"], "ip_address": "198.18.99.3"},
        ),
        400,
        "ip_address",
    )
    await expect_error(
        admin.create(
            "instance-ip",
            {"name": "gw", "virtual_network": net["uuid"], "ip_address": "198.18.64.1"},
        ),
        400,
        "ip_address",
    )
    iip = await admin.create(
        "instance-ip",
        {
            "name": "i1",
            "virtual_network": net["uuid"],
            "virtual_machine_interface": ports[0]["uuid"],
        },
    )
    assert iip["ip_address"] == "198.18.64.5" and iip["subnet_cidr"] == "198.18.64.0/29"
    other = await admin.create(
        "virtual-network",
        {"name": "other", "parent_uuid": project["uuid"], "subnets": [{"cidr": "198.18.65.0/29"}]},
    )
    await expect_error(
        admin.create(
            "instance-ip",
            {
                "name": "x",
                "virtual_network": other["uuid"],
                "virtual_machine_interface": ports[0]["uuid"],
            },
        ),
        409,
        "virtual_machine_interface",
    )
    # Two addresses in one request, the second taken: nothing is written.
    before = await revision(admin)
    await expect_error(
        admin.create(
            "virtual-machine-interface",
            {
                "name": "two",
                "parent_uuid": project["uuid"],
                "virtual_network": net["uuid"],
                "fixed_ips": [{"ip_address": "198.18.64.6"}, {"ip_address": "198.18.64.2"}],
            },
        ),
        409,
        "fixed_ips[1].ip_address",
    )
    assert await revision(admin) == before
    last = await admin.create("instance-ip", {"name": "i2", "virtual_network": net["uuid"]})
    assert last["ip_address"] == "198.18.64.6"
    await expect_error(
        admin.create("instance-ip", {"name": "i3", "virtual_network": net["uuid"]}),
        409,
        "ip_address",
    )
    # Shrinking the subnets under addresses in use is refused; deleting releases.
    await expect_error(
        admin.update("virtual-network", net["uuid"], {"subnets": []}), 409, "subnets"
    )
    await admin.delete("virtual-machine-interface", ports[1]["uuid"])
    again = await admin.create("instance-ip", {"name": "i3", "virtual_network": net["uuid"]})
    assert again["ip_address"] == "198.18.64.3"


async def test_concurrent_ports_get_distinct_addresses(admin: ConfigClient) -> None:
    project = await admin.create("project", {"name": "demo"})
    net = await admin.create(
        "virtual-network",
        {"name": "big", "parent_uuid": project["uuid"], "subnets": [{"cidr": "198.18.80.0/24"}]},
    )
    ports = await asyncio.gather(
        *(
            admin.create(
                "virtual-machine-interface",
                {"name": f"p{i}", "parent_uuid": project["uuid"], "virtual_network": net["uuid"]},
            )
            for i in range(40)
        )
    )
    addrs = {p["fixed_ips"][0]["ip_address"] for p in ports}
    assert len(addrs) == 40
    assert len({p["mac_address"] for p in ports}) == 40


async def test_floating_ip_needs_external_network(admin: ConfigClient) -> None:
    project, net = await base(admin)
    await expect_error(
        admin.create(
            "floating-ip",
            {"name": "f", "parent_uuid": project["uuid"], "floating_network": net["uuid"]},
        ),
        409,
        "floating_network",
    )
    public = await admin.create(
        "virtual-network",
        {
            "name": "public",
            "parent_uuid": project["uuid"],
            "external": True,
            "subnets": [{"cidr": "198.19.0.0/28"}],
        },
    )
    port = await admin.create(
        "virtual-machine-interface",
        {"name": "p", "parent_uuid": project["uuid"], "virtual_network": net["uuid"]},
    )
    fip = await admin.create(
        "floating-ip",
        {
            "name": "f",
            "parent_uuid": project["uuid"],
            "floating_network": public["uuid"],
            "virtual_machine_interface": port["uuid"],
        },
    )
    assert fip["floating_ip_address"] == "198.19.0.2"
    assert fip["fixed_ip_address"] == port["fixed_ips"][0]["ip_address"]


async def test_policy_rules_are_checked(admin: ConfigClient) -> None:
    project, net = await base(admin)
    await expect_error(
        admin.create(
            "network-policy",
            {
                "name": "p",
                "parent_uuid": project["uuid"],
                "rules": [{"action": "pass", "protocol": "icmp", "destination_ports": [80, 80]}],
            },
        ),
        400,
        "rules[0].destination_ports",
    )
    await expect_error(
        admin.create(
            "network-policy",
            {
                "name": "p",
                "parent_uuid": project["uuid"],
                "rules": [
                    {"action": "pass", "source": {"network": net["uuid"], "cidr": "10.0.0.0/8"}}
                ],
            },
        ),
        400,
        "rules[0].source",
    )
    await expect_error(
        admin.create(
            "network-policy",
            {
                "name": "p",
                "parent_uuid": project["uuid"],
                "rules": [{"action": "pass", "destination_ports": [90, 80], "protocol": "tcp"}],
            },
        ),
        400,
        "rules[0].destination_ports",
    )
    policy = await admin.create(
        "network-policy",
        {
            "name": "p",
            "parent_uuid": project["uuid"],
            "rules": [
                {
                    "action": "pass",
                    "protocol": "tcp",
                    "source": {"network": net["uuid"]},
                    "destination": {"cidr": "198.18.0.0/16"},
                    "destination_ports": [22, 22],
                }
            ],
        },
    )
    # The policy references the network: the network cannot go while the policy exists.
    await expect_error(admin.delete("virtual-network", net["uuid"]), 409)
    await admin.delete("network-policy", policy["uuid"])
    await admin.delete("virtual-network", net["uuid"])


async def test_auth_tokens_and_roles(api_url: str, reader: ConfigClient) -> None:
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{api_url}/projects") as resp:
            assert resp.status == 401
        async with s.get(f"{api_url}/projects", headers={"X-Auth-Token": "wrong" * 5}) as resp:
            assert resp.status == 401
        async with s.get(f"{api_url}/health") as resp:
            assert resp.status == 200 and (await resp.json())["status"] == "ok"
    assert (await reader.request("GET", "/projects"))["items"] == []
    await expect_error(reader.create("project", {"name": "x"}), 403)
    async with (
        aiohttp.ClientSession() as s,
        s.get(f"{api_url}/projects", headers={"Authorization": f"Bearer {reader.token}"}) as resp,
    ):
        assert resp.status == 200


async def test_agent_token_writes_port_states_only(api_url: str, admin: ConfigClient) -> None:
    """The vrouter agents' token: reads, and writes `port-state` objects, nothing else."""
    pid = "0c0e6a5e-2f6b-4d8a-9d0e-5c1f0b7e0a11"
    async with ConfigClient(api_url, AGENT_TOKEN) as agent:
        state = {"uuid": pid, "name": pid, "virtual_router": "compute1", "status": "down"}
        await agent.create("port-state", state)
        await agent.update("port-state", pid, {"virtual_router": "compute1", "status": "up"})
        assert (await admin.get("port-state", pid))["status"] == "up"  # type: ignore[index]
        assert (await agent.request("GET", "/projects"))["items"] is not None
        await expect_error(agent.create("project", {"name": "x"}), 403)
        project = await admin.create("project", {"name": "agent-cannot-delete"})
        await expect_error(agent.delete("project", project["uuid"]), 403)
        await admin.delete("project", project["uuid"])
        await agent.delete("port-state", pid)
        assert await admin.get("port-state", pid) is None


async def test_watch_resumes_from_a_revision(admin: ConfigClient) -> None:
    start = await revision(admin)
    project, net = await base(admin)
    events, rev = await admin.watch(start, timeout=5)
    got = [(e["op"], e["type"], e["uuid"]) for e in events]
    # A client may receive fewer revisions per call; it resumes from `rev`.
    while rev < net["version"]:
        more, rev = await admin.watch(rev, timeout=5)
        got += [(e["op"], e["type"], e["uuid"]) for e in more]
    assert got == [("put", "project", project["uuid"]), ("put", "virtual-network", net["uuid"])]
    # Long poll: a change made while the watcher waits wakes it.
    waiter = asyncio.ensure_future(admin.watch(rev, timeout=20))
    await asyncio.sleep(0.3)
    assert not waiter.done()
    await admin.delete("virtual-network", net["uuid"])
    events, rev2 = await asyncio.wait_for(waiter, 10)
    assert [(e["op"], e["uuid"], e["object"]["name"]) for e in events] == [
        ("delete", net["uuid"], "blue")
    ]
    assert rev2 > rev
    assert await admin.watch(rev2, timeout=0.2) == ([], rev2)
    await expect_error(admin.request("GET", "/watch"), 400, "since")


async def test_derived_children_go_with_their_network(admin: ConfigClient) -> None:
    _, net = await base(admin)
    ri = await admin.create(
        "routing-instance",
        {
            "name": "blue",
            "parent_uuid": net["uuid"],
            "route_target": "target:64512:8000000",
            "vni": 5,
            "forwarding_mode": "l2_l3",
        },
    )
    acl = await admin.create("access-control-list", {"name": "blue", "parent_uuid": net["uuid"]})
    assert ri["fq_name"] == ["demo", "blue", "blue"]
    start = await revision(admin)
    await admin.delete("virtual-network", net["uuid"])
    assert await admin.get("routing-instance", ri["uuid"]) is None
    assert await admin.get("access-control-list", acl["uuid"]) is None
    events, _ = await admin.watch(start, timeout=5)
    # One transaction: the network and its derived children disappear together.
    assert {(e["op"], e["uuid"]) for e in events} == {
        ("delete", net["uuid"]),
        ("delete", ri["uuid"]),
        ("delete", acl["uuid"]),
    }
    assert len({e["revision"] for e in events}) == 1


async def test_listing_many_children_of_a_parent(admin: ConfigClient) -> None:
    project, net = await base(admin)
    await admin.update("virtual-network", net["uuid"], {"subnets": [{"cidr": "198.18.72.0/24"}]})
    await asyncio.gather(
        *(
            admin.create(
                "virtual-machine-interface",
                {"name": f"p{i}", "parent_uuid": project["uuid"], "virtual_network": net["uuid"]},
            )
            for i in range(150)
        )
    )
    ports, _ = await admin.list_all("virtual-machine-interface", parent_uuid=project["uuid"])
    assert len(ports) == 150
    mine, _ = await admin.list_all("virtual-machine-interface", virtual_network=net["uuid"])
    assert len(mine) == 150


async def test_mirror_yields_the_events_that_changed_it(admin: ConfigClient) -> None:
    from vrstack.config.client import Mirror

    mirror = Mirror(admin, ["project", "virtual-network"])
    stop = asyncio.Event()
    batches = mirror.follow(stop, poll=5)
    first = await anext(batches)
    assert first.resynced and first.events == []
    project, net = await base(admin)
    seen: list[tuple[str, str]] = []
    while len(seen) < 2:
        batch = await asyncio.wait_for(anext(batches), 10)
        assert not batch.resynced
        seen += [(e["op"], e["uuid"]) for e in batch.events]
    assert seen == [("put", project["uuid"]), ("put", net["uuid"])]
    assert mirror.objects["virtual-network"][net["uuid"]]["version"] == net["version"]
    await admin.delete("virtual-network", net["uuid"])
    batch = await asyncio.wait_for(anext(batches), 10)
    assert (
        batch.types == {"virtual-network"} and net["uuid"] not in mirror.objects["virtual-network"]
    )
    stop.set()
    await batches.aclose()


async def test_watch_can_filter_types(admin: ConfigClient) -> None:
    start = await revision(admin)
    waiter = asyncio.ensure_future(admin.watch(start, timeout=20, types=["virtual-network"]))
    project = await admin.create("project", {"name": "demo"})
    await asyncio.sleep(0.3)
    assert not waiter.done()  # a project change does not end a virtual-network watch
    net = await admin.create("virtual-network", {"name": "n", "parent_uuid": project["uuid"]})
    events, rev = await asyncio.wait_for(waiter, 10)
    assert [e["uuid"] for e in events] == [net["uuid"]] and rev == net["version"]
    await admin.create("project", {"name": "other"})
    events, rev2 = await admin.watch(rev, timeout=0.3, types=["virtual-network"])
    assert events == [] and rev2 > rev  # skipped past the project, nothing missed
    await expect_error(admin.watch(rev, timeout=0, types=["nope"]), 400, "types")
