"""Two agents, each with its own vrouterd, on two control nodes in an iBGP mesh.

A port on one compute becomes a tunnel route with that compute's label in the other's
datapath; with both control nodes gone the routes stay (headless); when a node
returns, a port added meanwhile reaches the other agent and a deleted one goes.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from pathlib import Path

import pytest
from agentkit import dp_dump, dp_route, eventually, running_agent, settings
from controlkit import Cluster, instance_name

from vrstack.agent.ports import Port
from vrstack.config.testing import free_port
from vrstack.datapath.codec import Obj

pytestmark = pytest.mark.asyncio

MPLS_UDP = 0x04
MPLS_GRE = 0x02


async def test_routes_reach_the_other_datapath_and_survive_headless(
    cluster: Cluster, vrouterd: Callable[[str], Path]
) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    ri = await cluster.instance_of(blue)
    inst = instance_name(ri)
    ports = free_port(), free_port()
    await cluster.add_control_node("ctl-a", "127.0.0.1", ports[0])
    await cluster.add_control_node("ctl-b", "127.0.0.2", ports[1])
    a = await cluster.start_node("ctl-a", "127.0.0.1", bgp_port=ports[0])
    b = await cluster.start_node("ctl-b", "127.0.0.2", bgp_port=ports[1])
    vr1 = await c.create("virtual-router", {"name": "compute1", "fabric_address": "198.18.2.11"})
    await c.create("virtual-router", {"name": "compute2", "fabric_address": "198.18.2.12"})
    # The API port bound to compute1 makes the nodes push blue's config (and VNI) to it.
    vmi = {"name": "p1", "parent_uuid": project["uuid"], "virtual_network": blue["uuid"]}
    await c.create("virtual-machine-interface", {**vmi, "virtual_router": vr1["uuid"]})
    controls = [("127.0.0.1", a.xmpp_port), ("127.0.0.1", b.xmpp_port)]
    dp1, dp2 = vrouterd("dp1"), vrouterd("dp2")
    s1 = settings("compute1", "198.18.2.11", controls, dp1, label_range=(100, 199))
    s2 = settings("compute2", "198.18.2.12", controls, dp2, label_range=(200, 299))
    async with running_agent(s1) as ag1, running_agent(s2) as ag2:
        await eventually(lambda: all(s.up for s in ag1.sessions + ag2.sessions), what="sessions")
        ag1.add_port(Port("p1", inst, "blue", "02:00:c6:12:0a:03", ("198.18.10.3",), "tap-p1"))
        ag2.add_port(Port("p2", inst, "blue", "02:00:c6:12:0a:04", ("198.18.10.4",), "tap-p2"))
        vrf1 = ag1.vrfs.get(inst)
        vrf2 = ag2.vrfs.get(inst)

        # compute1's datapath: a tunnel to compute2 with compute2's label for p2.
        r = await eventually(lambda: dp_route(dp1, vrf1, "198.18.10.4/32"), what="remote route")
        label2 = ag2.labels.get("p2")
        assert 200 <= label2 <= 299
        assert r["RT_LABEL"] == label2 and r["RT_FLAGS"] == 1
        nh = r["nh"]
        assert nh["NH_TYPE"] == 4 and nh["NH_FLAGS"] == MPLS_UDP  # first of the priority
        assert nh["NH_TUN_SIP"] == ipaddress.ip_address("198.18.2.11")
        assert nh["NH_TUN_DIP"] == ipaddress.ip_address("198.18.2.12")
        assert nh["NH_OIF"] == 0 and nh["NH_DMAC"] == "02:00:00:00:0a:fe"
        # and its own VM: an encap nexthop to the port's vif, and its label -> that nexthop.
        local = dp_route(dp1, vrf1, "198.18.10.3/32")
        assert local is not None and local["nh"]["NH_TYPE"] == 3
        assert local["nh"]["NH_DMAC"] == "02:00:c6:12:0a:03"
        vif = {v["VIF_IDX"]: v for v in dp_dump(dp1, Obj.VIF)}[local["nh"]["NH_OIF"]]
        assert vif["VIF_TYPE"] == 3 and vif["VIF_VRF"] == vrf1
        # No interface tap-p1 here: the vif names none, so the datapath makes none.
        assert "VIF_NAME" not in vif
        labels = {m["LBL_LABEL"]: m["LBL_NH"] for m in dp_dump(dp1, Obj.LABEL)}
        assert labels == {ag1.labels.get("p1"): local["RT_NH"]}
        # the published route carries the instance's VNI (config pushed by the node)
        await eventually(lambda: ag1.instance_vnis().get(inst) == ri["vni"], what="vni")
        vnis = await eventually(lambda: dp_dump(dp1, Obj.VNI), what="vni in datapath")
        assert vnis == [{"VNI_VNI": ri["vni"], "VNI_VRF": vrf1}]
        r = await eventually(lambda: dp_route(dp2, vrf2, "198.18.10.3/32"), what="route on 2")
        assert r["RT_LABEL"] == ag1.labels.get("p1")

        # A new encapsulation priority reaches the agents: the tunnel moves to MPLSoGRE.
        gc, _ = await c.list_all("global-config")
        body = {"name": "default", "asn": gc[0]["asn"], "encapsulation_priority": ["MPLSoGRE"]}
        await c.update("global-config", gc[0]["uuid"], body)
        await eventually(
            lambda: (
                (dp_route(dp1, vrf1, "198.18.10.4/32") or {}).get("nh", {}).get("NH_FLAGS")
                == MPLS_GRE
            ),
            what="MPLSoGRE tunnel",
        )

        # Both control nodes gone: nothing is withdrawn from either datapath.
        await cluster.stop_node("ctl-a")
        await cluster.stop_node("ctl-b")
        await eventually(lambda: not any(s.up for s in ag1.sessions), what="headless")
        await ag1.wait_synced()
        assert ag1.introspect()["headless"]
        assert dp_route(dp1, vrf1, "198.18.10.4/32") is not None
        assert dp_route(dp2, vrf2, "198.18.10.3/32") is not None
        # Meanwhile compute2 gets a new port and loses its first one.
        ag2.add_port(Port("p3", inst, "blue", "02:00:c6:12:0a:05", ("198.18.10.5",), ""))
        ag2.delete_port("p2")
        await ag2.wait_synced()

        # One node returns: compute1 converges on compute2's new state.
        await cluster.start_node("ctl-a", "127.0.0.1", bgp_port=ports[0])
        a = cluster.nodes["ctl-a"][0]
        ag1.sessions[0].port = ag2.sessions[0].port = a.xmpp_port  # a new listening port
        r = await eventually(lambda: dp_route(dp1, vrf1, "198.18.10.5/32"), what="resync add")
        assert r["RT_LABEL"] == ag2.labels.get("p3")
        await eventually(
            lambda: dp_route(dp1, vrf1, "198.18.10.4/32") is None, what="resync withdrawal"
        )
        assert dp_route(dp1, vrf1, "198.18.10.3/32") is not None  # our own VM stays
        sess = ag1.introspect()["sessions"]
        assert sess[0]["state"] == "Established" and sess[0]["flaps"] == 1
        assert sess[1]["state"] != "Established" and sess[1]["flaps"] == 1
