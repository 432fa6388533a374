"""Security groups compiled into one ACL per port: the pure compiler, then the schema
transformer against a real API keeping the ACLs current as ports and rules change."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from test_transformer import settled, transformer

from vrstack.config.client import ConfigClient
from vrstack.config.store_sqlite import SQLiteStore
from vrstack.config.testing import ADMIN_TOKEN, running_api
from vrstack.schema.secgroups import acl_name, compile_port_acls

JSON = dict[str, Any]
G_WEB = "00000000-0000-4000-8000-0000000000a1"
G_DEFAULT = "00000000-0000-4000-8000-0000000000a2"


def port(uid: str, ips: list[str], groups: list[str], security: bool = True) -> JSON:
    return {
        "uuid": uid,
        "virtual_network": "net-1",
        "fixed_ips": [{"ip_address": ip} for ip in ips],
        "security_groups": groups,
        "port_security_enabled": security,
    }


def rule(direction: str, **kw: Any) -> JSON:
    return {
        "direction": direction,
        "ethertype": kw.pop("ethertype", "IPv4"),
        "protocol": kw.pop("protocol", "any"),
        "port_range": kw.pop("port_range", [0, 65535]),
        **kw,
    }


GROUPS = {
    G_WEB: {"uuid": G_WEB, "rules": [rule("ingress", protocol="tcp", port_range=[80, 80])]},
    G_DEFAULT: {
        "uuid": G_DEFAULT,
        "rules": [
            rule("egress"),
            rule("egress", ethertype="IPv6"),
            rule("ingress", remote_group=G_DEFAULT),
            rule("ingress", ethertype="IPv6", remote_group=G_DEFAULT),
        ],
    },
}


def test_a_port_gets_its_groups_rules_in_order_tagged_by_direction() -> None:
    ports = {"p1": port("p1", ["198.18.64.2"], [G_WEB, G_DEFAULT])}
    out = compile_port_acls(ports, GROUPS)
    acl = out["p1"]
    assert (acl.network, acl.name) == ("net-1", acl_name("p1"))
    assert acl.acl["virtual_machine_interface"] == "p1"
    entries = acl.acl["entries"]
    assert [(e["policy"], e["rule"], e["direction"], e["ethertype"]) for e in entries] == [
        (G_WEB, 0, "ingress", "IPv4"),
        (G_DEFAULT, 0, "egress", "IPv4"),
        (G_DEFAULT, 1, "egress", "IPv6"),
        (G_DEFAULT, 2, "ingress", "IPv4"),
        # No IPv6 member: the IPv6 remote-group rule matches nothing and is left out.
    ]
    assert entries[0]["destination_ports"] == [80, 80] and entries[0]["protocol"] == "tcp"
    assert entries[3]["source"] == ["198.18.64.2/32"] and entries[3]["destination"] == []
    assert all(e["action"] == "pass" for e in entries)


def test_remote_groups_follow_their_members() -> None:
    ports = {
        "p1": port("p1", ["198.18.64.2"], [G_DEFAULT]),
        "p2": port("p2", ["198.18.65.7", "2001:db8::7"], [G_DEFAULT]),
        "p3": port("p3", ["198.18.64.9"], [G_WEB]),
    }
    out = compile_port_acls(ports, GROUPS)
    ingress = [e for e in out["p1"].acl["entries"] if e["direction"] == "ingress"]
    assert [e["source"] for e in ingress] == [
        ["198.18.64.2/32", "198.18.65.7/32"],
        ["2001:db8::7/128"],
    ], "every member's addresses, of the rule's ethertype, on any network"
    del ports["p2"]
    ingress = [e for e in compile_port_acls(ports, GROUPS)["p1"].acl["entries"]]
    assert [e["source"] for e in ingress if e["direction"] == "ingress"] == [["198.18.64.2/32"]]


def test_ports_without_groups_or_port_security_get_no_acl() -> None:
    ports = {
        "none": port("none", ["198.18.64.2"], []),
        "off": port("off", ["198.18.64.3"], [G_WEB], security=False),
        "on": port("on", ["198.18.64.4"], [G_WEB]),
    }
    assert set(compile_port_acls(ports, GROUPS)) == {"on"}


@pytest_asyncio.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[str, ConfigClient]]:
    async with (
        running_api(SQLiteStore(str(tmp_path / "c.db")), "sqlite") as url,
        ConfigClient(url, ADMIN_TOKEN) as c,
    ):
        yield url, c


async def port_acls(c: ConfigClient) -> dict[str, JSON]:
    acls, _ = await c.list_all("access-control-list")
    return {a["virtual_machine_interface"]: a for a in acls if "virtual_machine_interface" in a}


@pytest.mark.asyncio
async def test_transformer_keeps_port_acls_current(api: tuple[str, ConfigClient]) -> None:
    url, c = api
    await c.create("global-config", {"name": "default", "asn": 64512})
    project = await c.create("project", {"name": "demo"})
    net = await c.create(
        "virtual-network",
        {"name": "blue", "parent_uuid": project["uuid"], "subnets": [{"cidr": "198.18.64.0/24"}]},
    )
    group = await c.create("security-group", {"name": "default", "parent_uuid": project["uuid"]})
    group = await c.update(
        "security-group",
        group["uuid"],
        {"rules": [{"direction": "ingress", "remote_group": group["uuid"]}]},
    )

    def vmi(name: str, ip: str) -> JSON:
        return {
            "name": name,
            "parent_uuid": project["uuid"],
            "virtual_network": net["uuid"],
            "fixed_ips": [{"ip_address": ip}],
            "security_groups": [group["uuid"]],
        }

    async with transformer(url) as t:
        p1 = await c.create("virtual-machine-interface", vmi("p1", "198.18.64.11"))
        await settled(t, c)
        acls = await port_acls(c)
        assert set(acls) == {p1["uuid"]}
        acl = acls[p1["uuid"]]
        assert (acl["parent_uuid"], acl["name"]) == (net["uuid"], acl_name(p1["uuid"]))
        assert acl["entries"][0]["source"] == ["198.18.64.11/32"]
        # The network's own ACL is still there, apart.
        all_acls, _ = await c.list_all("access-control-list", parent_uuid=net["uuid"])
        assert len(all_acls) == 2
        # Someone rewrites the network's own ACL to claim the port: the transformer finds it
        # by parent and name and restores it, rather than colliding with it (a 409).
        own = next(a for a in all_acls if a["name"] == "blue")
        await c.update(
            "access-control-list",
            own["uuid"],
            {"entries": [], "virtual_machine_interface": p1["uuid"]},
        )
        await settled(t, c)
        restored = await c.get("access-control-list", own["uuid"])
        assert restored is not None and "virtual_machine_interface" not in restored
        assert (await port_acls(c))[p1["uuid"]]["uuid"] == acl["uuid"]

        p2 = await c.create("virtual-machine-interface", vmi("p2", "198.18.64.12"))
        await settled(t, c)
        acls = await port_acls(c)
        # Members in port uuid order: the same list for the same ports, whatever the order.
        assert sorted(acls[p1["uuid"]]["entries"][0]["source"]) == [
            "198.18.64.11/32",
            "198.18.64.12/32",
        ]

        await c.update("security-group", group["uuid"], {"rules": []})
        await settled(t, c)
        assert [a["entries"] for a in (await port_acls(c)).values()] == [[], []]

        await c.delete("virtual-machine-interface", p2["uuid"])
        await c.update(
            "virtual-machine-interface",
            p1["uuid"],
            {**vmi("p1", "198.18.64.11"), "security_groups": []},
        )
        rev = await settled(t, c)
        assert await port_acls(c) == {}, "no groups, no port ACL; a deleted port's goes too"

    # A restart replays everything and writes nothing.
    async with transformer(url) as t:
        await asyncio.sleep(0.5)
        assert await settled(t, c) == rev
