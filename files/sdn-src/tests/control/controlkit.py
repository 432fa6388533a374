"""Helpers for the control node tests: a config API with the schema transformer, control
nodes on loopback addresses (127.0.0.x, one per node so BGP can tell them apart),
helpers to create the config every test needs, a `control.yaml` written and loaded, and
a route sink that records what a BGP speaker hands it."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from vrstack.config.client import ConfigClient, Mirror
from vrstack.config.store_sqlite import SQLiteStore
from vrstack.config.testing import ADMIN_TOKEN, free_port, running_api
from vrstack.control import bgp_codec as bc
from vrstack.control.bgp import Peer
from vrstack.control.node import CONFIG_TYPES, ControlNode, NodeSettings
from vrstack.schema.transformer import SchemaTransformer
from vrstack.service.settings import Settings

JSON = dict[str, Any]
ASN = 64512


class Cluster:
    """A config API (SQLite), the schema transformer, and control nodes started on demand."""

    def __init__(self, url: str, client: ConfigClient) -> None:
        self.url = url
        self.client = client
        self.nodes: dict[str, tuple[ControlNode, asyncio.Event, asyncio.Task[None]]] = {}

    async def start_node(self, name: str, address: str, **kw: Any) -> ControlNode:
        port = kw.pop("bgp_port", None) or free_port()
        settings = NodeSettings(
            name=name,
            bgp_address=address,
            bgp_port=port,
            xmpp_host="127.0.0.1",
            xmpp_port=0,
            connect_retry=0.5,
            report_interval=0.2,
            **kw,
        )
        node = ControlNode(settings, Mirror(ConfigClient(self.url, ADMIN_TOKEN), CONFIG_TYPES))
        await node.start()
        stop = asyncio.Event()
        self.nodes[name] = (node, stop, asyncio.ensure_future(node.run(stop)))
        return node

    async def stop_node(self, name: str) -> None:
        node, stop, task = self.nodes.pop(name)
        stop.set()
        await asyncio.wait_for(task, 15)
        await node.stop()
        assert node.mirror is not None
        await node.mirror.client.close()

    async def add_control_node(self, name: str, address: str, port: int, hold: int = 9) -> JSON:
        body = {"name": name, "address": address, "asn": ASN, "role": "control-node"}
        return await self.client.create("bgp-router", {**body, "port": port, "hold_time": hold})

    async def network(self, project: JSON, name: str, cidr: str, **kw: Any) -> JSON:
        return await self.client.create(
            "virtual-network",
            {"name": name, "parent_uuid": project["uuid"], "subnets": [{"cidr": cidr}], **kw},
        )

    async def instance_of(self, net: JSON, timeout: float = 15.0) -> JSON:
        """The routing instance the schema transformer derives for a network."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while loop.time() < deadline:
            ris, _ = await self.client.list_all("routing-instance", parent_uuid=net["uuid"])
            if ris:
                return ris[0]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no routing instance for {net['name']} within {timeout}s")


async def health_of(client: ConfigClient, name: str, timeout: float = 15.0, **want: str) -> JSON:
    """Wait until the service-health object `name` has the wanted fields."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        items, _ = await client.list_all("service-health", name=name)
        if items and all(
            items[0].get(k) == v or v in str(items[0].get(k)) for k, v in want.items()
        ):
            return items[0]
        if loop.time() > deadline:
            raise AssertionError(f"service-health {name} not {want} within {timeout}s: {items}")
        await asyncio.sleep(0.05)


def instance_name(ri: JSON) -> str:
    return ":".join(ri["fq_name"])


@contextlib.asynccontextmanager
async def running_cluster(db_path: str) -> AsyncIterator[Cluster]:
    """A config API on SQLite with a global-config, and the schema transformer running."""
    store = SQLiteStore(db_path)
    async with running_api(store) as url, ConfigClient(url, ADMIN_TOKEN) as client:
        await client.create("global-config", {"name": "default", "asn": ASN})
        schema = SchemaTransformer(ConfigClient(url, ADMIN_TOKEN), host="test")
        stop = asyncio.Event()
        task = asyncio.ensure_future(schema.run(stop))
        c = Cluster(url, client)
        try:
            yield c
        finally:
            for name in list(c.nodes):
                with contextlib.suppress(Exception):
                    await c.stop_node(name)
            stop.set()
            await asyncio.wait_for(task, 15)
            await schema.client.close()


def control_settings(tmp_path: Path, bgp: JSON, **sections: Any) -> Settings:
    """`control.yaml` in tmp_path with an API section (never reached: the tests only read
    the file), `bgp` (its address 127.0.0.44 unless given) and any other sections, loaded
    as `vrstack-control` loads it."""
    path = tmp_path / "control.yaml"
    data = {
        "api": {"url": "http://127.0.0.1:1", "token": "t" * 16},
        "bgp": {"address": "127.0.0.44", **bgp},
        **sections,
    }
    path.write_text(json.dumps(data))
    return Settings.load(path)


class RecordingSink:
    """A BGP speaker's route sink that keeps the UPDATEs and counts the sessions lost."""

    def __init__(self) -> None:
        self.updates: list[bc.Update] = []
        self.downs = 0

    def bgp_update(self, peer: Peer, update: bc.Update) -> None:
        self.updates.append(update)

    def bgp_down(self, peer: Peer) -> None:
        self.downs += 1
