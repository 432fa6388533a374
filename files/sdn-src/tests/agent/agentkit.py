"""Helpers for the agent tests: run an in-process agent and read its datapath."""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from vrstack.agent.agent import Agent, AgentSettings
from vrstack.agent.program import Fabric
from vrstack.datapath.client import DatapathClient
from vrstack.datapath.codec import Obj, Op


def settings(
    name: str, address: str, controls: list[tuple[str, int]], sock: Path, **kw: Any
) -> AgentSettings:
    return AgentSettings(
        name=name,
        fabric=Fabric(address=address, mac="02:00:00:00:0a:01", gateway_mac="02:00:00:00:0a:fe"),
        controls=controls,
        datapath_socket=str(sock),
        ping_interval=2.0,
        retry=0.2,
        **kw,
    )


@contextlib.asynccontextmanager
async def running_agent(s: AgentSettings) -> AsyncIterator[Agent]:
    agent = Agent(s)
    stop = asyncio.Event()
    task = asyncio.ensure_future(agent.run(stop))
    try:
        yield agent
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def eventually(check: Callable[[], Any], timeout: float = 15.0, what: str = "") -> Any:
    """Poll `check` until it returns something truthy (bounded in time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        value = check()
        if value:
            return value
        if loop.time() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}")
        await asyncio.sleep(0.05)


def dp_route(sock: Path, vrf: int, prefix: str) -> dict[str, Any] | None:
    """The datapath's route for an IPv4 prefix in a VRF, with its nexthop, or None."""
    net = ipaddress.ip_network(prefix)
    with DatapathClient(str(sock)) as c:
        routes = c.dump(Obj.ROUTE, RT_VRF=vrf, RT_FAMILY=1)
        for r in routes:
            if r.attrs["RT_PREFIX"] == net.network_address and r.attrs["RT_PLEN"] == net.prefixlen:
                nh = c.call(Op.GET, Obj.NH, NH_ID=r.attrs["RT_NH"]).attrs
                return {**r.attrs, "nh": nh}
    return None


def dp_dump(sock: Path, obj: Obj) -> list[dict[str, Any]]:
    with DatapathClient(str(sock)) as c:
        return [{k: v for k, v in m.attrs.items() if k != "RESULT"} for m in c.dump(obj)]
