"""Routers and floating IPs on the deployed lab cloud, through the `openstack` CLI.

A project's user routes two networks through a router whose gateway is an external
network the admin made, gives a port a floating IP, and takes it all down again; after
each step the SDN config API holds the same (the `vrstack_l3` service plugin's
`logical-router` and `floating-ip`). Requests the SDN or Neutron refuse come back to the
CLI as errors and change nothing. Runs with the other lab checks (`make lab-api-test`).

Addresses: the external network is 198.19.48.0/24, the project's networks
198.19.40.0/24 and 198.19.41.0/24 (in 198.18.0.0/15, used by nothing else in the lab).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import pytest
from labcloud import Cli, config_api_object

EXTERNAL_CIDR = "198.19.48.0/24"
TENANT_CIDRS = ("198.19.40.0/24", "198.19.41.0/24")


@pytest.fixture(scope="module")
def external(admin: Cli) -> Iterator[dict[str, str]]:
    """An external network with one subnet, made by the admin: {network, subnet}."""
    name = f"rtr-ext-{secrets.token_hex(3)}"
    net = admin.ok("network", "create", "--external", name)
    try:
        sub = admin.ok(
            "subnet", "create", "--network", net["id"], "--subnet-range", EXTERNAL_CIDR, name
        )
        yield {"network": net["id"], "subnet": sub["id"]}
    finally:
        # Function fixtures (l3_member) have removed routers and floating IPs by now.
        admin.run("network", "delete", net["id"])


def network_with_subnet(cli: Cli, name: str, cidr: str) -> tuple[str, str]:
    net = cli.ok("network", "create", name)
    sub = cli.ok("subnet", "create", "--network", net["id"], "--subnet-range", cidr, name)
    return net["id"], sub["id"]


def interfaces(router_id: str) -> dict[str, str]:
    """The config API's logical-router interfaces: subnet cidr -> network."""
    lr = config_api_object("logical-router", router_id)
    assert lr is not None, f"router {router_id} is not in the config API"
    return {i["subnet_cidr"]: i["virtual_network"] for i in lr["interfaces"]}


def neutron_interfaces(cli: Cli, router_id: str) -> list[Any]:
    return sorted(i["subnet_id"] for i in cli.ok("router", "show", router_id)["interfaces_info"])


def test_router_joins_two_networks_and_reaches_the_external_one(
    admin: Cli, l3_member: Cli, external: dict[str, str]
) -> None:
    cli = l3_member
    net_a, sub_a = network_with_subnet(cli, "rtr-a", TENANT_CIDRS[0])
    net_b, sub_b = network_with_subnet(cli, "rtr-b", TENANT_CIDRS[1])
    router = cli.ok("router", "create", "rtr")
    rid = router["id"]
    assert interfaces(rid) == {}
    cli.quiet("router", "add", "subnet", rid, sub_a)
    cli.quiet("router", "add", "subnet", rid, sub_b)
    assert interfaces(rid) == {TENANT_CIDRS[0]: net_a, TENANT_CIDRS[1]: net_b}

    # Refused: an interface on the external network (the SDN: it is only a gateway;
    # before the gateway is set, or Neutron refuses it as a subnet the router is on),
    # and a second interface on a subnet the router already joins (Neutron).
    before = neutron_interfaces(cli, rid)
    err = admin.fails("router", "add", "subnet", rid, external["subnet"])
    assert "external" in err.lower(), err
    err = cli.fails("router", "add", "subnet", rid, sub_a)
    assert sub_a in err or "already" in err.lower(), err
    assert neutron_interfaces(cli, rid) == before
    assert interfaces(rid) == {TENANT_CIDRS[0]: net_a, TENANT_CIDRS[1]: net_b}
    on_external = admin.ok(
        "port", "list", "--network", external["network"], "--device-owner",
        "network:router_interface",
    )  # fmt: skip
    assert not on_external, on_external

    cli.quiet("router", "set", "--external-gateway", external["network"], rid)
    lr = config_api_object("logical-router", rid)
    assert lr is not None and lr["external_gateway"] == external["network"]
    assert interfaces(rid) == {TENANT_CIDRS[0]: net_a, TENANT_CIDRS[1]: net_b}

    # Taken down again: the config API lets go of each piece as Neutron does.
    cli.quiet("router", "remove", "subnet", rid, sub_b)
    assert interfaces(rid) == {TENANT_CIDRS[0]: net_a}
    cli.quiet("router", "unset", "--external-gateway", rid)
    lr = config_api_object("logical-router", rid)
    assert lr is not None and "external_gateway" not in lr
    cli.quiet("router", "remove", "subnet", rid, sub_a)
    cli.quiet("router", "delete", rid)
    assert config_api_object("logical-router", rid) is None
    for net in (net_a, net_b):
        cli.quiet("network", "delete", net)
        assert config_api_object("virtual-network", net) is None


def test_floating_ip_follows_its_port(l3_member: Cli, external: dict[str, str]) -> None:
    cli = l3_member
    net, sub = network_with_subnet(cli, "fip-net", TENANT_CIDRS[0])
    router = cli.ok("router", "create", "--external-gateway", external["network"], "fip-rtr")
    cli.quiet("router", "add", "subnet", router["id"], sub)
    port = cli.ok("port", "create", "--network", net, "fip-port")
    fixed = port["fixed_ips"][0]["ip_address"]

    fip = cli.ok("floating", "ip", "create", external["network"])
    have = config_api_object("floating-ip", fip["id"])
    assert have is not None, "the floating IP did not reach the config API"
    assert have["floating_ip_address"] == fip["floating_ip_address"]
    assert have["floating_network"] == external["network"]
    assert "virtual_machine_interface" not in have

    cli.quiet("floating", "ip", "set", "--port", port["id"], fip["id"])
    have = config_api_object("floating-ip", fip["id"])
    assert have is not None
    assert (have.get("virtual_machine_interface"), have.get("fixed_ip_address")) == (
        port["id"],
        fixed,
    )
    cli.quiet("floating", "ip", "unset", "--port", fip["id"])
    have = config_api_object("floating-ip", fip["id"])
    assert have is not None and "virtual_machine_interface" not in have

    cli.quiet("floating", "ip", "delete", fip["id"])
    assert config_api_object("floating-ip", fip["id"]) is None
    assert not cli.ok("floating", "ip", "list")
