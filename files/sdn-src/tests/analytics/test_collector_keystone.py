"""The collector with `auth.backend: keystone` against a real Keystone and a real config API.

Keystone, its users and projects come from the config API's Keystone tests (the `lab`
fixture of tests/config/test_keystone_live.py, shared, not copied): Keystone project demo
(ada admin, max member, rita reader) and other (olga member). Both daemons run as
processes. Config projects a and b belong to demo and other, each with a network and its
routing instance; the collector holds flows and ports of both, and fabric records.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import test_page_browser as page_browser
from collectorkit import flow
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "config"))
import test_keystone_live as kslive

from vrstack.config.testing import Daemon

lab = kslive.lab  # the module-scoped Keystone fixture, one definition for both suites
call = kslive.call
Lab = kslive.Lab


def collector_config(lab: Lab, tmp_path: Path, config_url: str) -> dict[str, Any]:
    keystone = kslive.api_config(lab, tmp_path)["auth"]  # the same service user
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {"path": str(tmp_path / "analytics.db")},
        "auth": keystone,
        "config_api": {"url": config_url, "cache_ttl": 1},
        "log": {"level": "info"},
    }


def port(i: int, vrf: str, ip: str) -> dict[str, Any]:
    return {
        "kind": "port",
        "id": f"p{i}",
        "ts": time.time(),
        "interface": f"tap{i}",
        "vm": f"vm{i}",
        "network": vrf.rsplit(":", 1)[0],
        "vrf": vrf,
        "ip": ip,
        "mac": f"02:00:00:00:00:{i:02x}",
        "state": "up",
    }


FABRIC = [
    {"kind": "status", "id": "s1", "ts": time.time(), "service": "vrstack-agent", "state": "up"},
    {"kind": "log", "id": "l1", "ts": time.time(), "level": "info", "service": "x", "msg": "m"},
    {"kind": "counter", "id": "c1", "ts": time.time(), "name": "routes", "value": 3.0},
]
TABLES = ("flows", "ports", "logs", "status", "counters")


@pytest.mark.asyncio
async def test_read_only_tokens_see_only_their_projects_flows(lab: Lab, tmp_path: Path) -> None:
    ks = lab.keystone
    ada = ks.token("ada", kslive.PASSWORD, "demo")
    tokens = {
        "rita": ks.token("rita", kslive.PASSWORD, "demo"),
        "max": ks.token("max", kslive.PASSWORD, "demo"),
        "olga": ks.token("olga", kslive.PASSWORD, "other"),
    }
    api = Daemon("vrstack.config.main", kslive.api_config(lab, tmp_path), tmp_path, "api")
    api.start()
    collector: Daemon | None = None
    try:
        async with aiohttp.ClientSession() as s:

            async def make(kind: str, body: dict[str, Any]) -> dict[str, Any]:
                status, obj = await call(s, "POST", f"{api.url}/{kind}", ada, body)
                assert status == 201, obj
                return dict(obj)

            async def network(project: dict[str, Any], name: str, i: int) -> str:
                """A network and its routing instance (as the schema transformer makes
                it); returns the routing instance's name as agents report it."""
                net = await make(
                    "virtual-networks",
                    {"name": name, "parent_uuid": project["uuid"], "subnets": []},
                )
                ri = await make(
                    "routing-instances",
                    {
                        "name": name,
                        "parent_uuid": net["uuid"],
                        "route_target": f"target:64512:{8000000 + i}",
                        "vni": i,
                        "forwarding_mode": "l3",
                    },
                )
                return ":".join(ri["fq_name"])

            a = await make("projects", {"name": "a", "keystone_id": lab.demo})
            b = await make("projects", {"name": "b", "keystone_id": lab.other})
            vrf = {"a": await network(a, "net-a", 1), "b": await network(b, "net-b", 2)}
            assert vrf == {"a": "a:net-a:net-a", "b": "b:net-b:net-b"}

            collector = Daemon(
                "vrstack.analytics.main",
                collector_config(lab, tmp_path, api.url),
                tmp_path,
                "collector",
            )
            collector.start()
            url = collector.url
            records = [
                flow(1, vrf=vrf["a"], bytes=100),
                flow(2, vrf=vrf["a"], bytes=200),
                flow(3, vrf=vrf["b"], bytes=5000),
                port(1, vrf["a"], "198.18.10.3"),
                port(2, vrf["b"], "198.18.11.3"),
                *FABRIC,
            ]
            status, body = await call(s, "POST", f"{url}/ingest/cmp1", ada, {"records": records})
            assert status == 200 and body["accepted"] == len(records), body

            async def query(token: str | None, **q: Any) -> tuple[int, Any]:
                return await call(s, "POST", f"{url}/query", token, q)

            async def snapshot() -> list[Any]:
                out = []
                for table in TABLES:
                    status, body = await query(ada, table=table, select=["source", "id"])
                    assert status == 200, body
                    out.append(sorted((r["source"], r["id"]) for r in body["items"]))
                status, body = await call(s, "GET", f"{url}/status", ada)
                out.append(body)
                return out

            before = await snapshot()
            assert [len(t) for t in before[:5]] == [3, 2, 1, 1, 1]

            mine = {"rita": "a", "max": "a", "olga": "b"}
            for who, token in tokens.items():
                own, theirs = mine[who], "b" if mine[who] == "a" else "a"
                status, body = await query(token, table="flows")
                assert status == 200, (who, body)
                assert {r["vrf"] for r in body["items"]} == {vrf[own]}, (who, body)
                assert len(body["items"]) == (2 if own == "a" else 1), (who, body)
                # Asking for the other project's rows by name, or summing over all: only
                # its own.
                where = [{"field": "vrf", "value": vrf[theirs]}]
                status, body = await query(token, table="flows", where=where)
                assert status == 200 and body["items"] == [], (who, body)
                status, body = await query(
                    token, table="flows", select=["sum(bytes)", "count()"], group_by=[]
                )
                total = 300 if own == "a" else 5000
                assert body["items"] == [{"sum(bytes)": total, "count()": 2 if own == "a" else 1}]
                status, body = await query(token, table="ports")
                assert [p["vrf"] for p in body["items"]] == [vrf[own]], (who, body)
                # The fabric's data: 403.
                for table in ("logs", "status", "counters"):
                    status, body = await query(token, table=table)
                    assert status == 403 and "not a project's" in body["error"], (who, table)
                for path in ("/status", "/alarms", "/overview"):
                    status, body = await call(s, "GET", url + path, token)
                    assert status == 403 and "not a project's" in body["error"], (who, path)
                # Writes: refused as for any reader.
                status, body = await call(
                    s, "POST", f"{url}/ingest/cmp9", token, {"records": [flow(9, vrf=vrf[own])]}
                )
                assert status == 403 and "may only read" in body["error"], (who, body)
                status, body = await call(s, "DELETE", f"{url}/status/cmp1/vrstack-agent", token)
                assert status == 403, (who, body)
            for token in (None, "not-a-token"):
                for method, path, body in (
                    ("POST", "/query", {"table": "flows"}),
                    ("GET", "/status", None),
                    ("GET", "/overview", None),
                    ("POST", "/ingest/cmp9", {"records": [flow(9)]}),
                    ("DELETE", "/status/cmp1/vrstack-agent", None),
                ):
                    status, answer = await call(s, method, url + path, token, body)
                    assert status == 401, (token, path, status, answer)
            assert await snapshot() == before  # nothing the refused requests sent changed

            # The admin sees everything, fabric data too.
            status, body = await query(ada, table="flows")
            assert {r["vrf"] for r in body["items"]} == {vrf["a"], vrf["b"]}
            assert (await call(s, "GET", f"{url}/overview", ada))[0] == 200

            # A network added to project a: its flows show to a's readers once the
            # collector's view of the project expires (cache_ttl: 1), never to b's.
            vrf["a2"] = await network(a, "net-a2", 3)
            status, body = await call(
                s, "POST", f"{url}/ingest/cmp1", ada, {"records": [flow(4, vrf=vrf["a2"])]}
            )
            assert status == 200, body
            seen: set[str] = set()
            deadline = time.monotonic() + 15
            while vrf["a2"] not in seen and time.monotonic() < deadline:
                await asyncio.sleep(0.3)
                body = (await query(tokens["rita"], table="flows"))[1]
                seen = {r["vrf"] for r in body["items"]}
            assert seen == {vrf["a"], vrf["a2"]}, seen
            body = (await query(tokens["olga"], table="flows"))[1]
            assert {r["vrf"] for r in body["items"]} == {vrf["b"]}

            # The config API away: a reader's query gets 503 naming why, the admin's works.
            api.terminate()
            await asyncio.sleep(1.2)  # the cached view has expired
            status, body = await query(tokens["olga"], table="flows")
            assert status == 503 and "cannot find project" in body["error"], body
            assert (await query(ada, table="flows"))[0] == 200
        assert collector.terminate() == 0
    finally:
        api.kill()
        if collector is not None:
            collector.kill()


@pytest.mark.skipif(
    not (page_browser.CHROMIUM and page_browser.CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (make bootstrap installs them)",
)
def test_page_says_a_project_token_may_not_see_the_fabric(lab: Lab, tmp_path: Path) -> None:
    """The page in Chromium: a reader's token gets the refusal in words, the admin's the
    fabric. (The overview is refused before any project lookup: no config API needed.)"""
    ks = lab.keystone
    config = collector_config(lab, tmp_path, "http://127.0.0.1:9")
    config["fabric"] = {"name": "kslab", "nodes": []}
    collector = Daemon("vrstack.analytics.main", config, tmp_path, "collector")
    collector.start()
    driver = page_browser.browser(tmp_path)
    try:
        rita = ks.token("rita", kslive.PASSWORD, "demo")
        driver.get(f"{collector.url}/ui#token={rita}")
        error = page_browser.wait_for(driver, "#error:not([hidden])", "the refusal")
        WebDriverWait(driver, 20, poll_frequency=0.2).until(lambda d: "not allowed" in error.text)
        assert "rita may not read /overview" in error.text, error.text
        assert driver.find_element(By.ID, "login").is_displayed()
        assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-loaded") is None

        ada = ks.token("ada", kslive.PASSWORD, "demo")
        driver.find_element(By.ID, "token").send_keys(ada)
        driver.find_element(By.CSS_SELECTOR, "#login button").click()
        page_browser.wait_for(driver, "body[data-loaded]", "the admin's overview")
        assert driver.find_element(By.ID, "cluster").text == "kslab"
        assert not driver.find_element(By.ID, "error").is_displayed()
    finally:
        driver.quit()
        collector.kill()


@pytest.mark.asyncio
async def test_static_tokens_and_keystone_tokens_together(lab: Lab, tmp_path: Path) -> None:
    """What the roles deploy: the services' static tokens and Keystone's at once. The
    static admin token ingests and sees the fabric; a Keystone member sees its project's
    flows only and gets 403 on the fabric's status; Keystone down: 503 for its tokens,
    the static ones still work."""
    ks = lab.keystone
    max_ = ks.token("max", kslive.PASSWORD, "demo")
    olga = ks.token("olga", kslive.PASSWORD, "other")
    admin, reader = kslive.STATIC["admin_token"], kslive.STATIC["reader_token"]
    api = Daemon(
        "vrstack.config.main", kslive.both_config(lab, tmp_path, cache_ttl=0), tmp_path, "api"
    )
    api.start()
    collector: Daemon | None = None
    try:
        async with aiohttp.ClientSession() as s:
            vrf: dict[str, str] = {}
            for i, (name, project) in enumerate((("a", lab.demo), ("b", lab.other)), 1):
                p = (
                    await call(
                        s,
                        "POST",
                        f"{api.url}/projects",
                        admin,
                        {"name": name, "keystone_id": project},
                    )
                )[1]
                net = (
                    await call(
                        s,
                        "POST",
                        f"{api.url}/virtual-networks",
                        admin,
                        {"name": f"net-{name}", "parent_uuid": p["uuid"], "subnets": []},
                    )
                )[1]
                status, ri = await call(
                    s,
                    "POST",
                    f"{api.url}/routing-instances",
                    admin,
                    {
                        "name": f"net-{name}",
                        "parent_uuid": net["uuid"],
                        "route_target": f"target:64512:{8000000 + i}",
                        "vni": i,
                        "forwarding_mode": "l3",
                    },
                )
                assert status == 201, ri
                vrf[name] = ":".join(ri["fq_name"])
            config = collector_config(lab, tmp_path, api.url)
            config["auth"] = kslive.both_config(lab, tmp_path, cache_ttl=0)["auth"]
            collector = Daemon("vrstack.analytics.main", config, tmp_path, "collector")
            collector.start()
            url = collector.url
            records = [flow(1, vrf=vrf["a"]), flow(2, vrf=vrf["b"]), *FABRIC]
            status, body = await call(s, "POST", f"{url}/ingest/cmp1", admin, {"records": records})
            assert status == 200 and body["accepted"] == len(records), body

            async def flows(token: str) -> tuple[int, Any]:
                return await call(s, "POST", f"{url}/query", token, {"table": "flows"})

            for token, seen in (
                (max_, {vrf["a"]}),
                (olga, {vrf["b"]}),
                (reader, set(vrf.values())),
            ):
                status, body = await flows(token)
                assert status == 200 and {r["vrf"] for r in body["items"]} == seen, body
            status, body = await call(s, "GET", f"{url}/status", max_)
            assert status == 403 and "not a project's" in body["error"], body
            assert (await call(s, "GET", f"{url}/status", reader))[0] == 200
            status, body = await call(s, "POST", f"{url}/ingest/cmp9", max_, {"records": [flow(9)]})
            assert status == 403 and "may only read" in body["error"], body
            for token in (None, "not-a-token"):
                assert (await call(s, "GET", f"{url}/status", token))[0] == 401

            ks.stop()
            try:
                await asyncio.sleep(1.2)  # the collector's view of the project has expired
                status, body = await flows(olga)
                assert status == 503 and "cannot check the token" in body["error"], body
                status, body = await call(
                    s, "POST", f"{url}/ingest/cmp1", admin, {"records": [flow(3)]}
                )
                assert status == 200, body  # the services' reports never wait for Keystone
                assert (await call(s, "GET", f"{url}/status", reader))[0] == 200
            finally:
                ks.start()
        assert collector.terminate() == 0
    finally:
        api.kill()
        if collector is not None:
            collector.kill()
