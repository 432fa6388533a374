"""Which floating IPs are this compute's, and the NAT a new flow gets (tables; the
datapath end of it is tests/e2e/test_floating_ip_e2e.py and vrouter-src's test_nat)."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest

from vrstack.agent import fips
from vrstack.agent.ports import Port

JSON = dict[str, Any]
VM = Port("p1", "demo:red:red", "red", "02:00:00:00:00:01", ("198.18.10.4",))
OTHER = Port("p2", "demo:red:red", "red", "02:00:00:00:00:02", ("198.18.10.5",))
# A port on the external network on the same compute as VM.
PROBE = Port("p3", "demo:ext:ext", "ext", "02:00:00:00:00:03", ("198.18.30.6",))
EXT_RI = {"uuid": "ri-x", "parent_uuid": "ext", "fq_name": ["demo", "ext", "ext"]}


def fip(address: str = "198.18.30.20", port: str = "p1", fixed: str = "198.18.10.4") -> JSON:
    body: JSON = {"uuid": f"f-{address}", "floating_network": "ext"}
    body["floating_ip_address"] = address
    if port:
        body.update(virtual_machine_interface=port, fixed_ip_address=fixed)
    return body


def config(*floating: JSON, ri: bool = True) -> dict[str, JSON]:
    out = {f"floating-ip/{f['uuid']}": f for f in floating}
    if ri:
        out["routing-instance/ri-x"] = EXT_RI
    return out


@pytest.mark.parametrize(
    ("objects", "want"),
    [
        (
            config(fip()),
            {
                "198.18.30.20": fips.Fip(
                    "198.18.30.20", "198.18.10.4", "p1", "demo:ext:ext", "demo:red:red"
                )
            },
        ),
        (config(fip(port="")), {}),  # not associated
        (config(fip(port="p9")), {}),  # a port of another compute
        (config(fip(fixed="198.18.10.9")), {}),  # not one of the port's addresses
        (config(fip(), ri=False), {}),  # the external network's instance not pushed yet
        (config(fip(address="2001:db8::20")), {}),  # no IPv6 NAT in the datapath
    ],
)
def test_floating_ips_of_placed_ports(objects: dict[str, JSON], want: dict[str, fips.Fip]) -> None:
    assert fips.floating_ips(objects, {"p1": VM, "p2": OTHER}) == want


FIPS = fips.floating_ips(config(fip()), {"p1": VM})


def test_a_flow_to_the_floating_address_is_dnat_with_a_snat_reverse() -> None:
    nat = fips.plan(FIPS, None, "198.18.30.5", "198.18.30.20", "no matching rule")
    assert nat is not None and nat.inbound
    assert nat.forward_nat == {"FL_NAT_DIP": ipaddress.ip_address("198.18.10.4")}
    assert (nat.reverse_sip, nat.reverse_dip) == ("198.18.10.4", "198.18.30.5")
    assert nat.reverse_nat == {"FL_NAT_SIP": ipaddress.ip_address("198.18.30.20")}


def test_the_port_going_outside_is_snat_with_a_dnat_reverse() -> None:
    nat = fips.plan(FIPS, VM, "198.18.10.4", "198.18.30.5", "no matching rule")
    assert nat is not None and not nat.inbound
    assert nat.forward_nat == {"FL_NAT_SIP": ipaddress.ip_address("198.18.30.20")}
    assert (nat.reverse_sip, nat.reverse_dip) == ("198.18.30.5", "198.18.30.20")
    assert nat.reverse_nat == {"FL_NAT_DIP": ipaddress.ip_address("198.18.10.4")}


@pytest.mark.parametrize(
    ("sender", "sip", "dip", "why"),
    [
        (VM, "198.18.10.4", "198.18.10.7", "same network"),  # inside: no NAT
        (VM, "198.18.10.4", "198.18.20.7", "acl entry 0"),  # a policy or router decided
        (OTHER, "198.18.10.5", "198.18.30.5", "no matching rule"),  # no floating IP
        (None, "198.18.30.5", "198.18.10.4", "no matching rule"),  # to the fixed address
    ],
)
def test_other_flows_get_no_nat(sender: Port | None, sip: str, dip: str, why: str) -> None:
    assert fips.plan(FIPS, sender, sip, dip, why) is None


def test_a_remote_flow_stays_in_its_vrf() -> None:
    for nat in (
        fips.plan(FIPS, None, "198.18.30.5", "198.18.30.20", "no matching rule"),
        fips.plan(FIPS, VM, "198.18.10.4", "198.18.30.5", "no matching rule"),
    ):
        assert nat is not None
        assert (nat.forward_to, nat.reverse_in, nat.reverse_to) == ("", "", "")


def test_a_client_here_on_the_external_network_is_moved_to_the_ports_vrf() -> None:
    nat = fips.plan(FIPS, PROBE, "198.18.30.6", "198.18.30.20", "same network")
    assert nat is not None and nat.inbound
    assert nat.forward_nat == {"FL_NAT_DIP": ipaddress.ip_address("198.18.10.4")}
    # In: after the DNAT into red; the reply's entry is in red and goes back to ext.
    assert (nat.forward_to, nat.reverse_in, nat.reverse_to) == (
        "demo:red:red",
        "demo:red:red",
        "demo:ext:ext",
    )
    assert (nat.reverse_sip, nat.reverse_dip) == ("198.18.10.4", "198.18.30.6")


def test_the_port_going_to_a_port_here_on_the_external_network_moves_to_ext() -> None:
    nat = fips.plan(FIPS, VM, "198.18.10.4", "198.18.30.6", "no matching rule", PROBE)
    assert nat is not None and not nat.inbound
    assert nat.forward_nat == {"FL_NAT_SIP": ipaddress.ip_address("198.18.30.20")}
    # Out: after the SNAT into ext; the reply's entry is in ext and goes back to red.
    assert (nat.forward_to, nat.reverse_in, nat.reverse_to) == (
        "demo:ext:ext",
        "demo:ext:ext",
        "demo:red:red",
    )
    assert (nat.reverse_sip, nat.reverse_dip) == ("198.18.30.6", "198.18.30.20")


@pytest.mark.parametrize(
    ("sender", "sip", "receiver"),
    [
        (OTHER, "198.18.10.5", None),  # a port here in the port's own network: no move
        (VM, "198.18.10.4", VM),  # the port reaching its own floating address
    ],
)
def test_no_translation_inside_the_ports_own_vrf(
    sender: Port, sip: str, receiver: Port | None
) -> None:
    nat = fips.plan(FIPS, sender, sip, "198.18.30.20", "same network", receiver)
    assert nat is not None and nat.inbound
    assert (nat.forward_to, nat.reverse_in, nat.reverse_to) == ("", "", "")
