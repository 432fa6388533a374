"""A floating IP end to end on the e2e stack (`sdnstack.py`: config API, schema
transformer, two control nodes, two computes with vrouterd and the agent): an external
network `ext` (198.18.30.0/24) with a probe VM on cmp2 and another, `near`, on cmp1, a
router joining `red` to `ext` as its gateway, and a floating IP from `ext` for vm1 (red,
on cmp1).

Checked: the probe pings the floating address and talks TCP to vm1 through it, vm1 sees
the probe's own address (DNAT in); vm1 starting a connection to the probe arrives from
the floating address (SNAT out); the datapath holds NAT flows. The same from `near`, on
vm1's own compute, whose flows move between ext's VRF and red's (the datapath's VRF
translation). Once the floating IP is disassociated its route is withdrawn and its flows
end, and neither probe gets in.
"""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterator

import pytest
from netns import entered, nsexec, wait_for
from sdnstack import Stack, Vm

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root: namespaces, TAPs, a bridge")
EXT = "198.18.30.0/24"


def ping(src: Vm, ip: str, count: int = 1) -> bool:
    res = nsexec(src.ns, "ping", "-c", str(count), "-i", "0.2", "-W", "1", ip, check=False)
    return res.returncode == 0


@contextlib.contextmanager
def listening(vm: Vm, port: int) -> Iterator[socket.socket]:
    with entered(vm.ns):
        srv = socket.create_server(("0.0.0.0", port))
    srv.settimeout(10)
    try:
        yield srv
    finally:
        srv.close()


def talk(src: Vm, srv: socket.socket, ip: str, port: int) -> str:
    """Connect from `src` to ip:port (served by `srv`), exchange a line each way;
    returns the client address the server saw."""
    with entered(src.ns):
        cli = socket.create_connection((ip, port), timeout=5)
    with cli:
        conn, peer = srv.accept()
        with conn:
            conn.settimeout(5)
            cli.sendall(b"ping\n")
            assert conn.recv(16) == b"ping\n"
            conn.sendall(b"pong\n")
            assert cli.recv(16) == b"pong\n"
    return str(peer[0])


def nat_flows(stack: Stack, cmp: str, ip: str) -> list[dict[str, object]]:
    flows = stack.agent(cmp, f"/introspect/flows?ip={ip}")
    return [f for f in flows if f["action"] == "nat"]


@pytest.fixture(scope="module")
def setup(stack: Stack) -> tuple[Vm, Vm, str, dict[str, object]]:
    s = stack
    project = s.api("GET", "/projects?name=demo")["items"][0]
    pool = {"start": "198.18.30.10", "end": "198.18.30.99"}
    ext = s.create(
        "virtual-network",
        {
            "name": "ext",
            "parent_uuid": project["uuid"],
            "external": True,
            "subnets": [{"cidr": EXT, "allocation_pools": [pool]}],
        },
    )
    s.networks["ext"] = ext

    def instance() -> str:
        items = s.api("GET", f"/routing-instances?parent_uuid={ext['uuid']}")["items"]
        return ":".join(items[0]["fq_name"]) if items else ""

    s.instances["ext"] = wait_for(instance, 15, "ext's routing instance")
    s.create(
        "logical-router",
        {
            "name": "r1",
            "parent_uuid": project["uuid"],
            "interfaces": [{"virtual_network": s.networks["red"]["uuid"]}],
            "external_gateway": ext["uuid"],
        },
    )

    def on_ext(name: str, cmp: str) -> Vm:
        """A VM on ext, its port bound to compute `cmp`."""
        vrouter = s.api("GET", f"/virtual-routers?name={cmp}")["items"][0]
        port = s.create(
            "virtual-machine-interface",
            {
                "name": f"{name}-eth0",
                "parent_uuid": project["uuid"],
                "virtual_network": ext["uuid"],
                "virtual_router": vrouter["uuid"],
                "device_owner": "compute:nova",
                "device_id": name,
            },
        )
        return Vm(name, f"{s.prefix}-{name}", s.hosts[cmp], "ext", port, s.instances["ext"])

    # `near`: a client on ext on vm1's own compute.
    probe, near = on_ext("probe", "cmp2"), on_ext("near", "cmp1")
    for vm in (probe, near):
        s.vms[vm.name] = vm
        s.add_netns(vm.ns)
        s.attach(vm)
    s.wait_network_config([probe, near])
    s.dhcp([probe, near])
    vm1 = s.vms["vm1"]
    fip = s.create(
        "floating-ip",
        {
            "name": "fip1",
            "parent_uuid": project["uuid"],
            "floating_network": ext["uuid"],
            "virtual_machine_interface": vm1.port["uuid"],
        },
    )
    return vm1, probe, str(fip["floating_ip_address"]), fip


def test_the_probe_reaches_the_vm_through_its_floating_ip(
    stack: Stack, setup: tuple[Vm, Vm, str, dict[str, object]]
) -> None:
    vm1, probe, address, _ = setup
    assert address.startswith("198.18.30.")
    # The control node advertises <floating>/32 in ext: cmp2 has it, toward cmp1.
    route = wait_for(
        lambda: stack.dp_route("cmp2", probe, f"{address}/32"), 20, "the floating IP's route"
    )
    assert str(route["nh"].get("NH_TUN_DIP")) == stack.hosts["cmp1"].ip
    wait_for(lambda: ping(probe, address), 20, "the probe pings the floating IP", every=0.3)
    assert ping(probe, address, count=3)
    with listening(vm1, 7070) as srv:
        assert talk(probe, srv, address, 7070) == probe.ip, "vm1 sees the outside address"
    flows = nat_flows(stack, "cmp1", probe.ip)
    assert flows, "cmp1 holds NAT flows for the probe's traffic"
    # vm1 starts a connection out: it arrives from the floating address.
    with listening(probe, 7071) as srv:
        assert talk(vm1, srv, probe.ip, 7071) == address


def test_a_client_on_the_same_compute_reaches_it(
    stack: Stack, setup: tuple[Vm, Vm, str, dict[str, object]]
) -> None:
    vm1, _, address, _ = setup
    near = stack.vms["near"]
    wait_for(lambda: ping(near, address), 20, "near pings the floating IP", every=0.3)
    assert ping(near, address, count=3)
    with listening(vm1, 7073) as srv:
        assert talk(near, srv, address, 7073) == near.ip, "vm1 sees near's own address"
    # Its flows start in ext's VRF and move to red's, their reverses back: translated.
    vrfs = {v["instance"]: v["vrf"] for v in stack.agent("cmp1", "/introspect/vrfs")}
    moves = {(f["vrf"], f["dvrf"]) for f in nat_flows(stack, "cmp1", near.ip)}
    ext, red = vrfs[stack.instances["ext"]], vrfs[vm1.instance]
    assert {(ext, red), (red, ext)} <= moves, moves
    # vm1 starts a connection to near: it arrives from the floating address.
    with listening(near, 7074) as srv:
        assert talk(vm1, srv, near.ip, 7074) == address


def test_disassociation_stops_it(
    stack: Stack, setup: tuple[Vm, Vm, str, dict[str, object]]
) -> None:
    vm1, probe, address, fip = setup
    near = stack.vms["near"]
    path = f"/floating-ips/{fip['uuid']}"
    have = stack.api("GET", path)
    body = {
        k: v for k, v in have.items() if k not in ("virtual_machine_interface", "fixed_ip_address")
    }
    stack.api("PUT", path, body)
    wait_for(
        lambda: stack.dp_route("cmp2", probe, f"{address}/32") is None,
        20,
        "the floating IP's route withdrawn",
    )
    for client in (probe, near):
        wait_for(lambda c=client: not nat_flows(stack, "cmp1", c.ip), 10, "NAT flows ended")
        assert not ping(client, address, count=2)
        with listening(vm1, 7072), pytest.raises(OSError), entered(client.ns):
            socket.create_connection((address, 7072), timeout=3).close()
