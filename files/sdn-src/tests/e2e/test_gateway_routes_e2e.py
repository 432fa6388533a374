"""Networks routed to the outside, end to end with the fabric's gateway: the config API
with `gateway_route_targets` in global-config, the schema transformer, a control node,
a simulated agent, and BIRD 2 configured by roles/gateway's own template (it imports
only routes carrying the gateway's target and announces its routed networks with it).

Checked: BIRD receives the VM route of the `external: true` network, with the gateway's
target; the agent on that network receives the prefix BIRD announces; the VM route of
a network that is not external reaches BIRD's session but its filter drops it, and
BIRD's prefix does not reach that network. BIRD runs in a namespace on a veth pair of
198.19.0.0/16 (`BirdLab` of tests/control, shared with the BIRD interop tests).
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import jinja2
import jinja2.nativetypes
import pytest
import pytest_asyncio
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "control"))
from controlkit import ASN, Cluster, instance_name, running_cluster
from test_bird_interop import BirdLab, bird_lab, bird_shows  # noqa: F401 (a fixture)

from vrstack.control.simagent import SimAgent
from vrstack.control.xmpp import Nexthop

pytestmark = pytest.mark.asyncio
JSON = dict[str, Any]
ROLE = Path(__file__).resolve().parents[4] / "roles" / "gateway"
GATEWAY_RT = f"target:{ASN}:9000"  # what the fabric model computes for route_target: 9000
GATEWAY_AS = 64700
ROUTED = "198.18.128.0/24"  # the gateway's routed_networks
EXT_VM, RED_VM = "198.18.30.3/32", "198.18.31.3/32"


def gateway_bird_conf(lab: BirdLab) -> str:
    """roles/gateway's bird.conf.j2 rendered as the role renders it for a gateway that
    peers with our one control node (its vars as the fabric model gives them)."""
    gateway = {
        "name": "edge1",
        "address": lab.bird,
        "asn": GATEWAY_AS,
        "route_target": GATEWAY_RT,
        "routed_networks": [ROUTED],
        "cluster_asn": ASN,
        "neighbors": [{"name": "ctl-a", "address": lab.ours}],
    }
    defaults = yaml.safe_load((ROLE / "defaults" / "main.yml").read_text())
    vars_: JSON = {
        "vrstack_gateway": gateway,
        "ansible_managed": "rendered by test_gateway_routes_e2e",
        "ansible_facts": {"default_ipv4": {"gateway": lab.hop}},
        "gateway_hold_time": defaults["gateway_hold_time"],
        "gateway_mpls_label": defaults["gateway_mpls_label"],
        "gateway_bgp_password": "",
    }
    filters = {"regex_replace": lambda v, p, r: re.sub(p, r, v), "to_json": json.dumps}
    native = jinja2.nativetypes.NativeEnvironment(undefined=jinja2.StrictUndefined)
    native.filters.update(filters)
    for key, expr in yaml.safe_load((ROLE / "vars" / "main.yml").read_text()).items():
        vars_[key] = native.from_string(expr).render(vars_)
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters.update(filters)
    text = env.from_string((ROLE / "templates" / "bird.conf.j2").read_text()).render(vars_)
    # The role's gateway host has eth0; BIRD's end of our veth pair has another name.
    return text.replace("%eth0 ", f"%{lab.veth}b ")


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(str(tmp_path / "config.db")) as c:
        yield c


async def exported_with_gateway_target(cluster: Cluster, net: JSON, timeout: float = 15) -> JSON:
    deadline = time.monotonic() + timeout
    while True:
        ri = await cluster.instance_of(net)
        if GATEWAY_RT in ri["export_targets"]:
            return ri
        if time.monotonic() > deadline:
            raise AssertionError(f"{net['name']} does not export {GATEWAY_RT}: {ri}")
        await asyncio.sleep(0.05)


async def import_filtered(lab: BirdLab, at_least: int, timeout: float = 20) -> int:
    """BIRD's count of updates from the control node that its import filter dropped."""
    deadline = time.monotonic() + timeout
    while True:
        out = await asyncio.to_thread(lab.birdc, "show", "protocols", "all", "ctl_a")
        line = next((x for x in out.splitlines() if "Import updates:" in x), "")
        counts = [int(n) if n.isdigit() else 0 for n in line.split(":", 1)[-1].split()]
        filtered = counts[2] if len(counts) > 2 else 0  # received, rejected, filtered, ...
        if filtered >= at_least:
            return filtered
        if time.monotonic() > deadline:
            raise AssertionError(f"BIRD filtered fewer than {at_least} updates:\n{out}")
        await asyncio.sleep(0.1)


async def test_external_network_routes_reach_the_gateway_and_back(
    cluster: Cluster,
    bird_lab: BirdLab,  # noqa: F811 (the fixture imported above)
) -> None:
    c = cluster.client
    (gc,), _ = await c.list_all("global-config")
    await c.update(
        "global-config",
        gc["uuid"],
        {"asn": ASN, "gateway_route_targets": [GATEWAY_RT]},
        gc["version"],
    )
    project = await c.create("project", {"name": "demo"})
    ext = await cluster.network(project, "ext", "198.18.30.0/24", external=True)
    red = await cluster.network(project, "red", "198.18.31.0/24")
    ri_ext = await exported_with_gateway_target(cluster, ext)
    ri_red = await cluster.instance_of(red)
    assert GATEWAY_RT not in ri_red["export_targets"] + ri_red["import_targets"]
    ext_inst, red_inst = instance_name(ri_ext), instance_name(ri_red)

    await asyncio.to_thread(bird_lab.up, GATEWAY_RT, config=gateway_bird_conf(bird_lab))
    await c.create(
        "bgp-router",
        {
            "name": "edge1",
            "address": bird_lab.bird,
            "asn": GATEWAY_AS,
            "role": "gateway",
            "hold_time": 30,
        },
    )
    node = await cluster.start_node("ctl-a", bird_lab.ours)
    agent = SimAgent("compute1", "127.0.0.1", node.xmpp_port)
    await agent.connect()
    try:
        for inst in (ext_inst, red_inst):
            await agent.subscribe(inst)
        await agent.publish(ext_inst, {EXT_VM: Nexthop(bird_lab.compute, 17, 0, ("MPLSoUDP",))})
        await agent.publish(red_inst, {RED_VM: Nexthop(bird_lab.compute, 18, 0, ("MPLSoUDP",))})

        # BIRD has the external network's VM route, with the gateway's target.
        out = await bird_shows(bird_lab, EXT_VM)
        block = out[out.index(f"{bird_lab.ours}:") :].split("\n\n")[0]
        assert f"(rt, {ASN}, 9000)" in block, block
        assert "BGP.mpls_label_stack: 17" in block, block

        # The agent on the external network has the prefix BIRD announces, via BIRD
        # (`next hop self`; BIRD then gives its own label, not the static route's).
        hops = await agent.wait_for(lambda s: s.routes[ext_inst].get(ROUTED), timeout=30)
        assert [h.address for h in hops] == [bird_lab.bird]

        # red's route went to BIRD too, and BIRD's filter dropped it; red has no outside.
        await import_filtered(bird_lab, 1)
        assert RED_VM not in await asyncio.to_thread(
            bird_lab.birdc, "show", "route", "table", "vpntab4", "all"
        )
        assert ROUTED not in agent.routes.get(red_inst, {})
    finally:
        await agent.close()
