"""Neutron security groups and rules -> config API bodies, as tables (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from vrstack.config.model import RESOURCES
from vrstack.openstack import mapping

RULE = {"id": "r1", "security_group_id": "g1", "direction": "ingress", "ethertype": "IPv4"}
GROUP = "6f1ed3a6-4b0e-4a55-9a2e-7c1d1d0b7a12"


@pytest.mark.parametrize(
    ("change", "want"),
    [
        ({}, {"protocol": "any", "port_range": [0, 65535]}),
        ({"protocol": "tcp", "port_range_min": 80, "port_range_max": 80}, {"port_range": [80, 80]}),
        ({"protocol": "6", "port_range_min": 22}, {"protocol": "tcp", "port_range": [22, 22]}),
        ({"protocol": "icmp", "ethertype": "IPv6"}, {"protocol": "icmp6"}),
        ({"protocol": "ipv6-icmp", "ethertype": "IPv6"}, {"protocol": "icmp6"}),
        ({"protocol": "gre"}, {"protocol": "47"}),
        ({"protocol": "132"}, {"protocol": "132"}),
        ({"remote_ip_prefix": "198.18.0.1/15"}, {"remote_prefix": "198.18.0.0/15"}),
        ({"remote_group_id": GROUP}, {"remote_group": GROUP}),
    ],
)
def test_rule_entries(change: dict[str, Any], want: dict[str, Any]) -> None:
    rule = {**RULE, **change}
    mapping.check_sg_rule(rule)
    entry = mapping.sg_rule_entry(rule)
    assert entry["rule_id"] == "r1" and entry["direction"] == "ingress"
    assert {k: entry[k] for k in want} == want
    # What the mapping writes is what the config API keeps (so resyncs compare equal).
    body = {"rules": [entry]}
    assert RESOURCES["security-group"].validate(body)["rules"] == [entry]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"protocol": "icmp", "port_range_min": 8, "port_range_max": 0}, "not ICMP type"),
        ({"protocol": "sctp", "port_range_min": 9}, "tcp and udp only"),
        ({"protocol": "nope"}, "not an IP protocol"),
        ({"protocol": "300"}, "not an IP protocol"),
        ({"remote_address_group_id": GROUP}, "remote_address_group_id"),
    ],
)
def test_rules_the_agent_cannot_enforce_are_refused(change: dict[str, Any], message: str) -> None:
    with pytest.raises(mapping.Unsupported, match=message):
        mapping.check_sg_rule({**RULE, **change})


def test_stateless_groups_are_refused() -> None:
    with pytest.raises(mapping.Unsupported, match="stateful"):
        mapping.check_security_group({"stateful": False, "security_group_rules": []})
    mapping.check_security_group({"stateful": True, "security_group_rules": [RULE]})


def test_port_groups() -> None:
    port = {"project_id": "demo", "security_groups": ["b", "a"]}
    assert mapping.port_groups(port) == ["a", "b"]
    assert mapping.port_groups({**port, "port_security_enabled": False}) == []
    no_rule = mapping.no_rule_uuid("demo")
    assert mapping.port_groups({**port, "security_groups": []}) == [no_rule]
    assert mapping.port_groups({"project_id": "demo"}) == [], "no extension, no groups"
    assert mapping.no_rule_body("demo")["rules"] == []
    assert mapping.no_rule_uuid("other") != no_rule
