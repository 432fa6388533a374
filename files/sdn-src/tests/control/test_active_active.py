"""Two control nodes in an iBGP mesh from the config API, agents connected to both.

A route published through one node reaches agents on the other; stopping a node loses
no route for agents still connected to the other; routes leak between networks only
where a policy connects them; each agent gets its own config pushed.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from controlkit import ASN, Cluster, health_of, instance_name

from vrstack.config.testing import free_port
from vrstack.control.node import ControlNode
from vrstack.control.simagent import SimAgent
from vrstack.control.xmpp import Nexthop

pytestmark = pytest.mark.asyncio
JSON = dict[str, Any]
MPLS = ("MPLSoUDP", "MPLSoGRE")


async def connect(name: str, node: ControlNode, *instances: str) -> SimAgent:
    agent = SimAgent(name, "127.0.0.1", node.xmpp_port)
    await agent.connect()
    for inst in instances:
        await agent.subscribe(inst)
    return agent


async def established(node: ControlNode, peers: int, timeout: float = 20.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if node.health()["bgp_established"] == peers:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node.name}: not {peers} BGP sessions: {node.introspect()['bgp_peers']}")


async def two_nodes(cluster: Cluster) -> tuple[ControlNode, ControlNode]:
    ports = free_port(), free_port()
    await cluster.add_control_node("ctl-a", "127.0.0.1", ports[0])
    await cluster.add_control_node("ctl-b", "127.0.0.2", ports[1])
    a = await cluster.start_node("ctl-a", "127.0.0.1", bgp_port=ports[0])
    b = await cluster.start_node("ctl-b", "127.0.0.2", bgp_port=ports[1])
    return a, b


async def test_route_via_one_node_reaches_agents_of_the_other_and_survives_its_loss(
    cluster: Cluster,
) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    inst = instance_name(await cluster.instance_of(blue))
    for name, addr in (("compute1", "198.18.2.11"), ("compute2", "198.18.2.12")):
        await c.create("virtual-router", {"name": name, "fabric_address": addr})
    a, b = await two_nodes(cluster)
    await established(a, 1)
    await established(b, 1)
    assert a.speaker is not None and a.speaker.asn == ASN  # from global-config
    for name in ("control-ctl-a", "control-ctl-b"):
        await health_of(c, name, status="up", service="control")

    # compute1 talks to both nodes, compute2 too; each publishes its VM to both.
    c1a, c1b = await connect("compute1", a, inst), await connect("compute1", b, inst)
    c2a, c2b = await connect("compute2", a, inst), await connect("compute2", b, inst)
    vm1 = Nexthop("198.18.2.11", 17, 0, MPLS)
    vm2 = Nexthop("198.18.2.12", 18, 0, MPLS)
    # First only through node A: node B's agents must learn it over iBGP.
    await c1a.publish(inst, {"198.18.10.3/32": vm1})
    got = await c2b.wait_for(lambda s: s.routes[inst].get("198.18.10.3/32"))
    assert [(h.address, h.label) for h in got] == [("198.18.2.11", 17)]
    ri = await cluster.instance_of(blue)
    assert got[0].vni == ri["vni"]  # the VNI of the instance whose target the route carries
    # B holds it as a BGP path with A's route distinguisher.
    paths = b.routes(inst)[inst]["198.18.10.3/32"]["paths"]
    assert [p["source"] for p in paths] == ["bgp:127.0.0.1"]
    assert paths[0]["rd"].startswith("127.0.0.1:")

    await c1b.publish(inst, {"198.18.10.3/32": vm1})
    for agent in (c1a, c1b):
        await agent.publish(inst, {"198.18.10.3/32": vm1})
    for agent in (c2a, c2b):
        await agent.publish(inst, {"198.18.10.4/32": vm2})
    for agent in (c1a, c1b, c2a, c2b):
        await agent.wait_for(
            lambda s: (
                s.nexthops(inst, "198.18.10.3/32") == {"198.18.2.11"}
                and s.nexthops(inst, "198.18.10.4/32") == {"198.18.2.12"}
            )
        )

    # Node A goes away. Agents on B keep every route, without a withdrawal in between.
    before = len(c2b.retracted)
    await cluster.stop_node("ctl-a")
    await c1a.closed.wait()
    peer_a = await _wait_peer_down(b)
    assert peer_a["flaps"] >= 1
    await health_of(c, "control-ctl-b", status="degraded", detail="ctl-a")
    # B now resolves both prefixes from its own agents only; nothing was withdrawn.
    for prefix, hop in (("198.18.10.3/32", "198.18.2.11"), ("198.18.10.4/32", "198.18.2.12")):
        assert c2b.nexthops(inst, prefix) == {hop}
        assert c1b.nexthops(inst, prefix) == {hop}
        assert [p["source"] for p in b.routes(inst)[inst][prefix]["paths"]] == [
            f"agent:compute{1 if hop.endswith('11') else 2}"
        ]
    assert c2b.retracted[before:] == []

    # A comes back: the mesh re-forms and an agent on A learns B's routes again.
    await cluster.start_node("ctl-a", "127.0.0.1", bgp_port=a.s.bgp_port)
    a2 = cluster.nodes["ctl-a"][0]
    await established(a2, 1)
    c3a = await connect("compute3", a2, inst)
    await c3a.wait_for(lambda s: s.nexthops(inst, "198.18.10.4/32") == {"198.18.2.12"})
    for agent in (c1b, c2a, c2b, c3a):
        await agent.close()


async def _wait_peer_down(node: ControlNode, timeout: float = 15.0) -> JSON:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        peers = node.introspect()["bgp_peers"]
        if peers and peers[0]["state"] != "Established":
            return peers[0]  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError(f"{node.name}: peer still up")


async def test_policy_leaks_routes_between_networks_and_ecmp(cluster: Cluster) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    red = await cluster.network(project, "red", "198.18.11.0/24")
    green = await cluster.network(project, "green", "198.18.12.0/24")
    a, b = await two_nodes(cluster)
    blue_i = instance_name(await cluster.instance_of(blue))
    red_i = instance_name(await cluster.instance_of(red))
    green_i = instance_name(await cluster.instance_of(green))
    c1 = await connect("compute1", a, blue_i)
    c2 = await connect("compute2", b, blue_i, red_i, green_i)
    await c1.publish(blue_i, {"198.18.10.3/32": Nexthop("198.18.2.11", 17, 0, MPLS)})
    await c2.publish(red_i, {"198.18.11.3/32": Nexthop("198.18.2.12", 20, 0, MPLS)})
    await c2.publish(green_i, {"198.18.12.3/32": Nexthop("198.18.2.12", 21, 0, MPLS)})
    await c2.wait_for(lambda s: s.nexthops(blue_i, "198.18.10.3/32"))
    assert "198.18.11.3/32" not in c1.routes[blue_i]  # no policy yet: red stays out of blue

    # A policy between blue and red: each imports the other's target, green stays apart.
    policy = await c.create(
        "network-policy",
        {
            "name": "blue-red",
            "parent_uuid": project["uuid"],
            "rules": [
                {
                    "action": "pass",
                    "protocol": "any",
                    "source": {"network": blue["uuid"]},
                    "destination": {"network": red["uuid"]},
                }
            ],
        },
    )
    for net in (blue, red):
        fresh = await c.get("virtual-network", net["uuid"])
        assert fresh is not None
        body = {k: fresh[k] for k in ("subnets", "forwarding_mode", "network_policies")}
        body["network_policies"] = [policy["uuid"]]
        await c.update("virtual-network", net["uuid"], body)
    # Red's route reaches blue's agent on the other node (imported there by target).
    await c1.wait_for(lambda s: s.nexthops(blue_i, "198.18.11.3/32") == {"198.18.2.12"})
    await c2.wait_for(lambda s: s.nexthops(red_i, "198.18.10.3/32") == {"198.18.2.11"})
    assert "198.18.12.3/32" not in c1.routes[blue_i]
    assert "198.18.10.3/32" not in c2.routes[green_i]

    # ECMP: two computes announce the same address; agents get both nexthops, then one.
    any_ip = "198.18.10.100/32"
    await c1.publish(blue_i, {any_ip: Nexthop("198.18.2.11", 30, 0, MPLS)})
    c4 = await connect("compute4", b)
    await c4.publish(blue_i, {any_ip: Nexthop("198.18.2.14", 31, 0, MPLS)})
    await c2.wait_for(lambda s: s.nexthops(blue_i, any_ip) == {"198.18.2.14"} | {"198.18.2.11"})
    await c4.abort()  # the compute crashed: its routes go with its session
    await c2.wait_for(lambda s: s.nexthops(blue_i, any_ip) == {"198.18.2.11"})
    await c1.retract(blue_i, [any_ip])
    await c2.wait_for(lambda s: not s.nexthops(blue_i, any_ip))
    for agent in (c1, c2):
        await agent.close()


async def test_agent_gets_its_config(cluster: Cluster) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    red = await cluster.network(project, "red", "198.18.11.0/24")
    vr1 = await c.create("virtual-router", {"name": "compute1", "fabric_address": "198.18.2.11"})
    await c.create("virtual-router", {"name": "compute2", "fabric_address": "198.18.2.12"})
    a, _ = await two_nodes(cluster)
    port = await c.create(
        "virtual-machine-interface",
        {
            "name": "vm1-eth0",
            "parent_uuid": project["uuid"],
            "virtual_network": blue["uuid"],
            "virtual_router": vr1["uuid"],
        },
    )
    await cluster.instance_of(blue)
    await cluster.instance_of(red)
    c1 = await connect("compute1", a)
    c2 = await connect("compute2", a)

    def types(agent: SimAgent) -> dict[str, set[str]]:
        out: dict[str, set[str]] = {}
        for key, obj in agent.config.items():
            out.setdefault(key.split("/")[0], set()).add(obj["name"])
        return out

    want = {
        "global-config": {"default"},
        "virtual-router": {"compute1"},
        "virtual-machine-interface": {"vm1-eth0"},
        "virtual-network": {"blue"},
        "routing-instance": {"blue"},
        "access-control-list": {"blue"},
    }
    await c1.wait_for(lambda s: types(s) == want)
    await c2.wait_for(
        lambda s: types(s) == {"global-config": {"default"}, "virtual-router": {"compute2"}}
    )
    # The port moves to compute2: compute1's copy is retracted, compute2 gets it.
    body = {k: port[k] for k in ("virtual_network", "mac_address", "fixed_ips")}
    vr2 = next(o for o in a.mirror.objects["virtual-router"].values() if o["name"] == "compute2")  # type: ignore[union-attr]
    await c.update(
        "virtual-machine-interface", port["uuid"], {**body, "virtual_router": vr2["uuid"]}
    )
    await c1.wait_for(lambda s: "virtual-machine-interface" not in types(s))
    await c2.wait_for(lambda s: types(s).get("virtual-machine-interface") == {"vm1-eth0"})
    assert c2.config_revision >= port["version"]
    for agent in (c1, c2):
        await agent.close()
