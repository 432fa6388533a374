"""`GET /overview` (what the page draws), the page's files, and the config's fabric section."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from collectorkit import NOW, Client, flow, running_collector, status

from vrstack.analytics.main import main
from vrstack.analytics.overview import UNKNOWN_RACK, Fabric, Node
from vrstack.analytics.server import Options
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN

FABRIC = Fabric(
    "lab",
    (
        Node("ctl1", "rack1", "198.18.1.11", ("control",), ()),
        Node("cmp1", "rack1", "198.18.1.21", ("compute",), ("ctl1", "ctl2")),
        Node("ctl2", "rack2", "198.18.2.11", ("control",), ()),
    ),
)


def port(i: str, ts: float, **over: object) -> dict[str, object]:
    rec = {
        "kind": "port",
        "id": i,
        "ts": ts,
        "interface": "tap1",
        "vm": "vm1",
        "network": "demo:blue",
        "vrf": "demo:blue:blue",
        "ip": "198.18.10.3",
        "mac": "02:00:00:00:00:01",
        "state": "up",
    }
    rec.update(over)
    return rec


def routes(i: str, ts: float, value: int, vrf: str = "demo:blue:blue") -> dict[str, object]:
    return {"kind": "counter", "id": i, "ts": ts, "name": "routes", "object": vrf, "value": value}


@pytest.mark.asyncio
async def test_overview_from_fabric_and_reports(tmp_path: Path) -> None:
    options = Options(fabric=FABRIC, page_window=600)
    async with running_collector(tmp_path / "o.db", options) as run, Client(run.url) as c:
        now = time.time()
        # cmp1's agent only talks to ctl1 (ctl2, which the fabric paired it with, is
        # missing); ctl2 never reports; a node outside the fabric does.
        conns = [{"type": "control", "name": "198.18.1.11", "state": "up"}]
        assert (await c.ingest("cmp1", [status("s1", connections=conns)]))[0] == 200
        assert (await c.ingest("ctl1", [status("s2", service="vrstack-control", connections=[])]))[
            0
        ] == 200
        assert (await c.ingest("stray", [status("s3", state="degraded", connections=[])]))[0] == 200
        records = [
            port("p1", now - 30, state="down"),
            port("p2", now - 10),  # the newest report of tap1 wins
            port("p3", now - 900, interface="tap2", vm="gone"),  # outside the window
            port("p4", now - 5, interface="tap3", vm="vm3", network="demo:red", vrf="demo:red:red"),
            routes("r1", now - 20, 3),
            routes("r2", now - 5, 7),
            routes("r3", now - 5, 2, "demo:green:green"),  # routes but no VM: still listed
            flow(1, end=now - 5, bytes=100),
            flow(2, end=now - 5, bytes=900, src_ip="198.18.10.9"),
            flow(3, end=now - 5, bytes=300),
            flow(4, start=now - 2100, end=now - 2000, bytes=10**9),  # outside the window
        ]
        assert (await c.ingest("cmp1", records))[0] == 200

        code, data = await c.call("GET", "/overview")
        assert code == 200, data
        assert data["cluster"] == "lab"
        racks = {r["name"]: {n["name"]: n["state"] for n in r["nodes"]} for r in data["racks"]}
        assert racks == {
            "rack1": {"ctl1": "up", "cmp1": "up"},
            "rack2": {"ctl2": "silent"},
            UNKNOWN_RACK: {"stray": "degraded"},
        }
        assert [r["name"] for r in data["racks"]][-1] == UNKNOWN_RACK
        assert sorted(
            (s["agent"], s["control"], s["peer"], s["state"]) for s in data["sessions"]
        ) == [
            ("cmp1", "ctl1", "198.18.1.11", "up"),
            ("cmp1", "ctl2", "198.18.2.11", "missing"),
        ]
        nets = {n["vrf"]: n for n in data["networks"]}
        assert list(nets) == ["demo:blue:blue", "demo:green:green", "demo:red:red"]
        blue = nets["demo:blue:blue"]
        assert blue["network"] == "demo:blue"
        assert [(v["vm"], v["state"], v["source"]) for v in blue["vms"]] == [("vm1", "up", "cmp1")]
        assert [(r["source"], r["count"]) for r in blue["routes"]] == [("cmp1", 7)]
        assert nets["demo:green:green"]["network"] == "demo:green"
        assert nets["demo:green:green"]["vms"] == []
        # Top flows of the window, largest first.
        assert [(f["src_ip"], f["bytes"]) for f in data["flows"]] == [
            ("198.18.10.9", 900),
            ("198.18.10.4", 300),
            ("198.18.10.2", 100),
        ]

        # A late service turns its node down; its alarm is listed.
        await c.ingest("ctl1", [status("s4", service="vrstack-control", connections=[], ts=NOW)])
        run.collector.book.latest[("ctl1", "vrstack-control")] = (
            run.collector.book.latest[("ctl1", "vrstack-control")][0],
            now - 3600,
        )
        await run.collector.refresh_alarms()
        data = (await c.call("GET", "/overview"))[1]
        ctl1 = next(n for n in data["racks"][0]["nodes"] if n["name"] == "ctl1")
        assert ctl1["state"] == "down" and ctl1["alarms"] == 1
        assert [a["id"] for a in data["alarms"]] == ["service-down:ctl1:vrstack-control"]


@pytest.mark.asyncio
async def test_page_is_public_and_its_data_is_not(tmp_path: Path) -> None:
    async with running_collector(tmp_path / "o.db") as run:
        async with Client(run.url, token=None) as anon:
            for path, kind in (
                ("/ui", "text/html"),
                ("/ui/page.js", "text/javascript"),
                ("/ui/page.css", "text/css"),
            ):
                async with anon.session.get(run.url + path) as resp:
                    assert resp.status == 200 and resp.content_type == kind
                    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
            assert (await anon.call("GET", "/overview"))[0] == 401
        async with Client(run.url, token=READER_TOKEN) as reader:
            code, data = await reader.call("GET", "/overview")
            assert code == 200 and data["racks"] == [] and data["flows"] == []
        async with Client(run.url, token=ADMIN_TOKEN) as admin:
            assert (await admin.call("GET", "/overview"))[0] == 200


AUTH = f"store: {{path: x.db}}\nauth: {{admin_token: {ADMIN_TOKEN}}}\n"
NODE = "{name: n1, rack: r1, address: 198.18.1.5, roles: [compute]}"


@pytest.mark.parametrize(
    ("fabric", "field"),
    [
        ("fabric: [1]", "fabric"),
        ("fabric: {name: lab, racks: {}}", "fabric.racks"),
        ("fabric: {nodes: {n1: {}}}", "fabric.nodes"),
        ("fabric: {nodes: [{name: n1, rack: r1, roles: []}]}", "fabric.nodes[0].address"),
        (
            "fabric: {nodes: [{name: n1, rack: r1, address: 192.0.2.300}]}",
            "fabric.nodes[0].address",
        ),
        (f"fabric: {{nodes: [{NODE}, {NODE}]}}", "fabric.nodes[1].name"),
        (
            "fabric: {nodes: [{name: n1, rack: r1, address: 198.18.1.5, roles: [gpu]}]}",
            "fabric.nodes[0].roles",
        ),
        (
            "fabric: {nodes: [{name: n1, rack: r1, address: 198.18.1.5, colour: red}]}",
            "fabric.nodes[0].colour",
        ),
        ("page: {window: 0}", "page.window"),
    ],
)
def test_bad_fabric_config_names_the_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], fabric: str, field: str
) -> None:
    path = tmp_path / "collector.yaml"
    path.write_text(AUTH + fabric + "\n")
    assert main(["--config", str(path)]) == 2
    err = capsys.readouterr().err
    assert str(path) in err and f"{field}:" in err, err
