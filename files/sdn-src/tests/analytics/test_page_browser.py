"""The operator's page in a real headless Chromium (Debian's chromium + chromium-driver,
driven by Selenium): a real vrstack-collector process fed by real `Sender`s describing a
two-rack fabric; the page must draw the nodes, sessions, VMs and flows, follow changes by
itself, and its screenshot must show something."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from pngpixels import colour_counts
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from vrstack.analytics.sender import Sender
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, Daemon

CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="Debian's chromium and chromium-driver are not installed (make bootstrap installs them)",
)

# Two racks; each compute pairs with a control node in each rack, as the fabric model does.
FABRIC = {
    "name": "testlab",
    "nodes": [
        {"name": "ctl1", "rack": "rack1", "address": "198.18.1.11", "roles": ["control"]},
        {
            "name": "cmp1",
            "rack": "rack1",
            "address": "198.18.1.21",
            "roles": ["compute"],
            "control_nodes": ["ctl1", "ctl2"],
        },
        {"name": "ctl2", "rack": "rack2", "address": "198.18.2.11", "roles": ["control"]},
        {
            "name": "cmp2",
            "rack": "rack2",
            "address": "198.18.2.21",
            "roles": ["compute"],
            "control_nodes": ["ctl2", "ctl1"],
        },
    ],
}
VRF = "demo:blue:blue"


def sessions(ctl1: str, ctl2: str) -> list[dict[str, str]]:
    return [
        {"type": "control", "name": "198.18.1.11", "state": ctl1},
        {"type": "control", "name": "198.18.2.11", "state": ctl2},
    ]


@pytest.fixture
def collector(tmp_path: Path) -> Iterator[Daemon]:
    config = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {"path": str(tmp_path / "analytics.db")},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
        "fabric": FABRIC,
        "log": {"level": "info"},
    }
    d = Daemon("vrstack.analytics.main", config, tmp_path, "collector")
    try:
        d.start()
        yield d
    finally:
        d.kill()


@pytest_asyncio.fixture
async def senders(collector: Daemon) -> AsyncIterator[dict[str, Sender]]:
    """One running Sender per node, as each node's services would have."""
    out = {
        name: Sender(collector.url, name, ADMIN_TOKEN, flush_interval=0.05, backoff_min=0.05)
        for name in ("ctl1", "ctl2", "cmp1", "cmp2")
    }
    stop = asyncio.Event()
    tasks = [asyncio.ensure_future(s.run(stop)) for s in out.values()]
    try:
        yield out
    finally:
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 15)


def describe_fabric(s: dict[str, Sender]) -> None:
    now = time.time()
    for ctl in ("ctl1", "ctl2"):
        s[ctl].emit("status", service="vrstack-control", state="up", interval=10)
    s["cmp1"].emit(
        "status",
        service="vrstack-agent",
        state="up",
        interval=10,
        datapath="present",
        connections=sessions("up", "up"),
    )
    s["cmp2"].emit(
        "status",
        service="vrstack-agent",
        state="up",
        interval=10,
        datapath="absent",
        detail="vrouterd is not running",
        connections=sessions("down", "up"),
    )
    for node, vm, ip, mac in (
        ("cmp1", "vm-web", "198.18.10.3", "02:00:00:00:10:03"),
        ("cmp2", "vm-db", "198.18.10.4", "02:00:00:00:10:04"),
    ):
        s[node].emit(
            "port",
            interface=f"tap-{vm}",
            vm=vm,
            network="demo:blue",
            vrf=VRF,
            ip=ip,
            mac=mac,
            state="up",
        )
        s[node].emit("counter", name="routes", object=VRF, value=4)
    # The web VM's traffic to the database: the top flow; a small one below it.
    s["cmp1"].emit(
        "flow",
        start=now - 60,
        end=now - 1,
        vrf=VRF,
        src_ip="198.18.10.3",
        dst_ip="198.18.10.4",
        proto=6,
        src_port=40001,
        dst_port=5432,
        bytes=152_340,
        packets=120,
        action="forward",
    )
    s["cmp2"].emit(
        "flow",
        start=now - 30,
        end=now - 2,
        vrf=VRF,
        src_ip="198.18.10.4",
        dst_ip="198.18.10.3",
        proto=1,
        bytes=840,
        packets=10,
        action="forward",
    )


def browser(tmp_path: Path) -> WebDriver:
    opts = webdriver.ChromeOptions()
    opts.binary_location = str(CHROMIUM)
    for arg in (
        "--headless=new",
        "--no-sandbox",  # root in a VM: no user namespaces for the sandbox
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        opts.add_argument(arg)
    return webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=opts)


def wait_for(driver: WebDriver, css: str, what: str, timeout: float = 20) -> Any:
    try:
        return WebDriverWait(driver, timeout, poll_frequency=0.2).until(
            lambda d: d.find_elements(By.CSS_SELECTOR, css)
        )[0]
    except TimeoutException:
        error = driver.find_element(By.ID, "error").text
        raise AssertionError(
            f"{what}: no {css} after {timeout} s (page error: {error!r})\n"
            + driver.find_element(By.TAG_NAME, "main").text
        ) from None


@pytest.mark.asyncio
async def test_page_shows_the_fabric_and_follows_it(
    collector: Daemon, senders: dict[str, Sender], tmp_path: Path
) -> None:
    describe_fabric(senders)
    for name, s in senders.items():
        assert await s.flushed(10), f"{name}: {s.last_error}"
        assert s.stats["rejected"] == 0

    driver = browser(tmp_path)
    try:
        # The token travels in the fragment, which the browser does not send.
        driver.get(f"{collector.url}/ui#token={READER_TOKEN}")
        wait_for(driver, "[data-node='cmp1'][data-state='up']", "the nodes")
        assert "token=" not in driver.current_url

        # Racks and nodes as the fabric says, each with its state.
        racks = {
            r.get_attribute("data-rack"): [
                n.get_attribute("data-node") for n in r.find_elements(By.CSS_SELECTOR, ".node")
            ]
            for r in driver.find_elements(By.CSS_SELECTOR, "[data-rack]")
        }
        assert racks == {"rack1": ["ctl1", "cmp1"], "rack2": ["ctl2", "cmp2"]}
        states = {
            n.get_attribute("data-node"): n.get_attribute("data-state")
            for n in driver.find_elements(By.CSS_SELECTOR, "[data-node]")
        }
        assert states == {"ctl1": "up", "cmp1": "up", "ctl2": "up", "cmp2": "up"}
        assert "vrstack-agent up" in driver.find_element(By.CSS_SELECTOR, "[data-node='cmp1']").text
        # cmp2's agent is up but its datapath is not: the node says it has an alarm.
        assert "1 alarm" in driver.find_element(By.CSS_SELECTOR, "[data-node='cmp2']").text
        assert "alarm" not in driver.find_element(By.CSS_SELECTOR, "[data-node='cmp1']").text

        # Which agent talks to which control node, and how.
        got = {
            e.get_attribute("data-session"): e.get_attribute("data-state")
            for e in driver.find_elements(By.CSS_SELECTOR, "#sessions [data-session]")
        }
        assert got == {
            "cmp1>ctl1": "up",
            "cmp1>ctl2": "up",
            "cmp2>ctl1": "down",
            "cmp2>ctl2": "up",
        }

        # VMs of the network, top flows (largest first, bytes shown for people), alarms.
        net = driver.find_element(By.CSS_SELECTOR, "[data-network='demo:blue']")
        vms = [e.text.split() for e in net.find_elements(By.CSS_SELECTOR, "[data-vm]")]
        assert [v[:4] for v in vms] == [
            ["vm-db", "198.18.10.4", "02:00:00:00:10:04", "cmp2"],
            ["vm-web", "198.18.10.3", "02:00:00:00:10:03", "cmp1"],
        ]
        assert "routes: cmp1 4, cmp2 4" in net.text
        flows = driver.find_elements(By.CSS_SELECTOR, "#flows [data-flow]")
        assert [f.get_attribute("data-flow") for f in flows] == [
            "198.18.10.3>198.18.10.4",
            "198.18.10.4>198.18.10.3",
        ]
        cells = [c.text for c in flows[0].find_elements(By.TAG_NAME, "td")]
        assert cells == [
            VRF,
            "198.18.10.3",
            "198.18.10.4",
            "6",
            "5432",
            "forward",
            "148.8 KiB",
            "120",
        ]
        alarms = [
            a.get_attribute("data-alarm")
            for a in driver.find_elements(By.CSS_SELECTOR, "#alarms [data-alarm]")
        ]
        assert alarms == ["datapath-missing:cmp2:vrstack-agent"]

        # The screenshot shows a drawn page: many colours, no single one filling it.
        shot = tmp_path / "page.png"
        assert driver.save_screenshot(str(shot))
        counts = colour_counts(shot.read_bytes())
        total = sum(counts.values())
        top = counts.most_common(1)[0][1]
        assert len(counts) > 50, f"{shot}: only {len(counts)} colours"
        assert top / total < 0.9, f"{shot}: one colour covers {top / total:.0%}"

        # It follows the fabric by itself: cmp1 loses both control nodes.
        senders["cmp1"].emit(
            "status",
            service="vrstack-agent",
            state="up",
            interval=10,
            datapath="present",
            connections=sessions("down", "connecting"),
        )
        assert await senders["cmp1"].flushed(10)
        wait_for(
            driver,
            "#sessions [data-session='cmp1>ctl2'][data-state='connecting']",
            "the refreshed session",
        )
        wait_for(driver, "#alarms [data-alarm='control-lost:cmp1:vrstack-agent']", "the alarm")
    finally:
        driver.quit()
