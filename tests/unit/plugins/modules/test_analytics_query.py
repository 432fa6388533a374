"""analytics_query's logic (module_utils/analytics_api.py) against a real
vrstack-collector process: records sent by the sender, then queried, paged and refused."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils import analytics_api

SDN_SRC = Path(__file__).resolve().parents[4] / "files" / "sdn-src"
sys.path.insert(0, str(SDN_SRC))
from vrstack_apis import collector as running_collector  # noqa: E402

from vrstack.analytics.sender import Sender  # noqa: E402
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, free_port  # noqa: E402

NOW = time.time()


def flow(i: int, src: str, dport: int, nbytes: int) -> dict[str, Any]:
    return {
        "start": NOW - 60 + i,
        "end": NOW - 30 + i,
        "vrf": "demo:blue:blue",
        "src_ip": src,
        "dst_ip": "198.18.20.4",
        "proto": 6,
        "src_port": 40000 + i,
        "dst_port": dport,
        "bytes": nbytes,
        "packets": 10,
        "action": "forward",
    }


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with running_collector(tmp_path_factory.mktemp("collector")) as d:
        asyncio.run(send(d.url))
        yield d.url


async def send(url: str) -> None:
    """25 flows from 198.18.10.3 to port 80 and 5 from 198.18.10.5 to 443, through the sender."""
    sender = Sender(url, "lab-cmp1", ADMIN_TOKEN, flush_interval=0.05)
    for i in range(25):
        sender.emit("flow", **flow(i, "198.18.10.3", 80, 100 * (i + 1)))
    for i in range(5):
        sender.emit("flow", **flow(i, "198.18.10.5", 443, 7))
    stop = asyncio.Event()
    task = asyncio.ensure_future(sender.run(stop))
    assert await sender.flushed(15)
    stop.set()
    await task
    assert sender.stats["sent"] == 30


def query(url: str, pages: int = 1, token: str = READER_TOKEN, **params: Any) -> dict[str, Any]:
    post = analytics_api.open_url_poster(url, token, timeout=10)
    return analytics_api.run(post, analytics_api.build(params), pages)


def test_group_by_sum_sorted(collector: str) -> None:
    got = query(
        collector,
        table="flows",
        select=["src_ip", "sum(bytes)", "count()"],
        group_by=["src_ip"],
        since="-1h",
        sort=[{"field": "sum(bytes)", "order": "desc"}],
        limit=10,
    )
    assert got["items"] == [
        {
            "src_ip": "198.18.10.3",
            "sum(bytes)": sum(100 * (i + 1) for i in range(25)),
            "count()": 25,
        },
        {"src_ip": "198.18.10.5", "sum(bytes)": 35, "count()": 5},
    ]
    assert (got["count"], got["next"], got["pages"]) == (2, None, 1)


def test_where_and_paging_follow_the_cursor(collector: str) -> None:
    where = [
        {"field": "dst_port", "value": 80},
        {"field": "src_ip", "op": "in", "value": "198.18.10.0/24"},
    ]

    def src_ports(pages: int) -> dict[str, Any]:
        """Ports of the flows to port 80, ten a page, up to `pages` pages."""
        q = {"table": "flows", "select": ["src_port"], "where": where, "sort": ["src_port"]}
        return query(collector, pages=pages, limit=10, **q)

    one = src_ports(1)
    assert one["count"] == 10 and one["next"] and one["pages"] == 1
    every = src_ports(5)
    assert [r["src_port"] for r in every["items"]] == [40000 + i for i in range(25)]
    assert (every["pages"], every["next"]) == (3, None)
    capped = src_ports(2)
    assert capped["count"] == 20 and capped["next"]  # more left: the cursor says so


def test_bad_queries_name_the_field(collector: str) -> None:
    with pytest.raises(analytics_api.QueryError) as err:
        query(collector, table="flows", where=[{"field": "src_ip", "op": "in", "value": "nope"}])
    assert err.value.status == 400 and err.value.field_name == "where[0].value"
    assert "(field where[0].value)" in str(err.value)
    with pytest.raises(analytics_api.QueryError) as err:
        query(collector, table="flows", select=["sum(vrf)"])
    assert err.value.field_name == "select[0]"
    with pytest.raises(analytics_api.QueryError) as err:
        query(collector, token="wrong", table="flows")
    assert err.value.status == 401


def test_unreachable_api_says_where_to_look() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(
        analytics_api.QueryError, match=r"cannot reach the analytics API at .*vrstack-collector"
    ):
        query(url, table="logs")


def test_build_leaves_unset_options_to_the_api() -> None:
    params = {"table": "logs", "select": None, "where": [], "since": "-1h", "limit": None,
              "until": "", "group_by": None, "sort": None, "url": "x", "token": "t"}  # fmt: skip
    assert analytics_api.build(params) == {"table": "logs", "since": "-1h"}
