"""Tempest-style API scenarios against the deployed lab cloud, through the `openstack` CLI.

Runs from the deploy host after site.yml (molecule's lab scenario runs it in its verify
step; by hand: `make lab-api-test`). Each test is one user-visible scenario: a normal
project's user creating networks, subnets, ports, security groups and servers; what
that user may not see; how a request the SDN cannot hold is refused. `pytest -rA` lists
what passes and fails.

Needs: the admin credentials site.yml writes on the deploy host
(~/.local/share/vrstack/<cluster>/openrc and secrets.yml), and an `openstack` client
(VRSTACK_OPENSTACK_CLIENT, else the OpenStack venv of scripts/openstack-venv.sh).
Addresses used by the scenarios are in 198.19.0.0/16 (the project's network rule).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from labcloud import SERVER_TIMEOUT, Cli, config_api_object


def test_token_is_issued(admin: Cli) -> None:
    token = admin.ok("token", "issue")
    assert token["id"] and token["expires"]


def test_catalog_lists_every_service(admin: Cli) -> None:
    types = {entry["Type"] for entry in admin.ok("catalog", "list")}
    assert {"identity", "image", "placement", "compute", "network"} <= types


def test_compute_services_are_up_and_computes_are_hypervisors(admin: Cli) -> None:
    services = admin.ok("compute", "service", "list")
    assert {s["Binary"] for s in services} >= {"nova-conductor", "nova-scheduler", "nova-compute"}
    down = [f"{s['Binary']}@{s['Host']}" for s in services if s["State"] != "up"]
    assert not down, f"down: {down}"
    hosts = {h["Hypervisor Hostname"].split(".")[0] for h in admin.ok("hypervisor", "list")}
    assert {"lab-cmp1", "lab-cmp2"} <= hosts


# ---- networking as a project's user ----------------------------------------------------


def test_member_builds_network_subnet_and_port(member: Cli) -> None:
    net = member.ok("network", "create", "api-net")
    subnet = member.ok(
        "subnet", "create", "--network", net["id"], "--subnet-range", "198.19.30.0/24", "api-sub"
    )
    assert subnet["gateway_ip"] == "198.19.30.1"
    port = member.ok(
        "port", "create", "--network", net["id"], "--fixed-ip",
        f"subnet={subnet['id']},ip-address=198.19.30.40", "api-port",
    )  # fmt: skip
    assert port["fixed_ips"][0]["ip_address"] == "198.19.30.40"
    # The SDN holds what Neutron holds: the network with its subnet, the port with its address.
    vn = config_api_object("virtual-network", net["id"])
    assert vn is not None, "the network did not reach the config API"
    assert [s["cidr"] for s in vn["subnets"]] == ["198.19.30.0/24"]
    vmi = config_api_object("virtual-machine-interface", port["id"])
    assert vmi is not None and vmi["mac_address"] == port["mac_address"]
    member.quiet("port", "delete", port["id"])
    member.quiet("network", "delete", net["id"])
    assert config_api_object("virtual-network", net["id"]) is None


def test_member_cannot_see_another_projects_network(admin: Cli, member: Cli) -> None:
    private = admin.ok("network", "create", "api-admin-private")
    try:
        assert private["id"] not in {n["ID"] for n in member.ok("network", "list")}
        assert "No Network found" in member.fails("network", "show", private["id"])
    finally:
        admin.quiet("network", "delete", private["id"])


def test_subnet_without_gateway_is_refused_with_the_reason(member: Cli) -> None:
    net = member.ok("network", "create", "api-nogw")
    try:
        err = member.fails(
            "subnet", "create", "--network", net["id"], "--subnet-range", "198.19.31.0/24",
            "--gateway", "none", "api-nogw",
        )  # fmt: skip
        assert "gateway" in err and "vrstack" in err, err
        assert not member.ok("subnet", "list", "--network", net["id"])
    finally:
        member.quiet("network", "delete", net["id"])


def test_network_in_use_cannot_be_deleted(member: Cli) -> None:
    net = member.ok("network", "create", "api-inuse")
    member.ok("subnet", "create", "--network", net["id"], "--subnet-range", "198.19.32.0/24", "s")
    port = member.ok("port", "create", "--network", net["id"], "p")
    err = member.fails("network", "delete", net["id"])
    assert "in use" in err.lower() or "conflict" in err.lower(), err
    member.quiet("port", "delete", port["id"])
    member.quiet("network", "delete", net["id"])


def test_security_group_rules(member: Cli) -> None:
    group = member.ok("security", "group", "create", "api-web")
    rule = member.ok(
        "security", "group", "rule", "create", "--protocol", "tcp", "--dst-port", "80",
        "--remote-ip", "198.19.0.0/16", group["id"],
    )  # fmt: skip
    rules = member.ok("security", "group", "rule", "list", group["id"])
    assert rule["id"] in {r["ID"] for r in rules}
    member.quiet("security", "group", "rule", "delete", rule["id"])
    member.quiet("security", "group", "delete", group["id"])


def test_quotas_are_enforced(admin: Cli, member: Cli) -> None:
    project = member.env["OS_PROJECT_NAME"]
    have = len(member.ok("network", "list"))
    admin.quiet("quota", "set", "--networks", str(have + 1), project)
    try:
        first = member.ok("network", "create", "api-q1")
        err = member.fails("network", "create", "api-q2")
        assert "quota" in err.lower(), err
        member.quiet("network", "delete", first["id"])
    finally:
        admin.quiet("quota", "set", "--networks", "100", project)


# ---- images and servers -----------------------------------------------------------------


def test_member_uploads_a_private_image(member: Cli, tmp_path: Path) -> None:
    disk = tmp_path / "blank.raw"
    disk.write_bytes(b"\0" * (1 << 20))
    image = member.ok(
        "image", "create", "--disk-format", "raw", "--container-format", "bare",
        "--private", "--file", str(disk), "api-blank",
    )  # fmt: skip
    assert image["status"] == "active" and image["size"] == 1 << 20
    member.quiet("image", "delete", image["id"])


def test_member_boots_a_server_that_gets_its_address_by_dhcp(member: Cli) -> None:
    net = member.ok("network", "create", "api-boot")
    member.ok("subnet", "create", "--network", net["id"], "--subnet-range", "198.19.33.0/24", "s")
    server = member.ok(
        "server", "create", "--image", "vrstack-guest", "--flavor", "vrstack.tiny",
        "--network", net["id"], "--wait", "api-server", timeout=SERVER_TIMEOUT,
    )  # fmt: skip
    assert server["status"] == "ACTIVE"
    address = server["addresses"]["api-boot"][0]
    deadline = time.monotonic() + SERVER_TIMEOUT
    console = ""
    while time.monotonic() < deadline:
        console = member.run("console", "log", "show", server["id"]).stdout
        if f"vrstack-guest: eth0 {address}/24" in console:
            break
        time.sleep(5)
    else:
        pytest.fail(f"no DHCP line for {address} on the console: {console[-800:]}")
    port = member.ok("port", "list", "--server", server["id"])[0]
    assert port["Status"] == "ACTIVE", port
    member.run("server", "delete", "--wait", server["id"], timeout=SERVER_TIMEOUT)
    assert not member.ok("port", "list", "--network", net["id"], "--device-owner", "compute:nova")
    member.quiet("network", "delete", net["id"])
