"""Filters only look things up in the model the inventory plugin built."""

from __future__ import annotations

import pytest
from ansible.errors import AnsibleFilterError

from ansible_collections.vrstack.cloud.plugins.filter.fabric import (
    FilterModule,
    fabric_control_addresses,
    fabric_host,
    fabric_hosts_entries,
    fabric_rack_routes,
    fabric_role_hosts,
)
from ansible_collections.vrstack.cloud.plugins.plugin_utils.fabric import build_model

DATA = {
    "cluster": {"name": "t", "asn": 64512, "ha": True, "loopback_pool": "198.18.255.0/24"},
    "spine": {"link_pool": "198.18.0.0/24"},
    "racks": {
        "r1": {"subnet": "198.18.1.0/24", "gateway": "198.18.1.1"},
        "r2": {"subnet": "198.18.2.0/24", "gateway": "198.18.2.1"},
        "r3": {"subnet": "198.18.3.0/24", "gateway": "198.18.3.1"},
    },
    "hosts": {
        "c1": {"rack": "r1", "roles": ["controller", "control"]},
        "c2": {"rack": "r2", "roles": ["control"]},
        "n1": {"rack": "r2", "roles": ["compute"]},
        "a3": {"rack": "r3", "roles": ["analytics"]},
    },
}
MODEL = build_model(DATA, "t/fabric.yml")


def test_hosts_entries_cover_every_host_in_file_order() -> None:
    assert fabric_hosts_entries(MODEL) == [
        "198.18.1.2 c1",
        "198.18.2.2 c2",
        "198.18.2.3 n1",
        "198.18.3.2 a3",
    ]


def test_role_hosts() -> None:
    assert fabric_role_hosts(MODEL, "control") == ["c1", "c2"]
    assert fabric_role_hosts(MODEL, "database") == []


def test_rack_routes_go_via_own_gateway_to_the_other_racks() -> None:
    # The model refuses a multi-rack site with a rack that is not uplinked, so every
    # other rack is routed through the spine.
    assert fabric_rack_routes(MODEL, "n1") == [
        {"dest": "198.18.1.0/24", "via": "198.18.2.1"},
        {"dest": "198.18.3.0/24", "via": "198.18.2.1"},
        {"dest": "198.18.255.0/24", "via": "198.18.2.1"},
    ]
    assert fabric_rack_routes(MODEL, "a3")[-1] == {"dest": "198.18.255.0/24", "via": "198.18.3.1"}


def test_control_addresses_primary_first() -> None:
    assert fabric_control_addresses(MODEL, "n1") == ["198.18.2.2", "198.18.1.2"]
    assert fabric_control_addresses(MODEL, "c1") == []


def test_unknown_host_is_a_clear_error() -> None:
    with pytest.raises(AnsibleFilterError, match="host 'nope' is not in the fabric model"):
        fabric_host(MODEL, "nope")


def test_every_filter_is_registered() -> None:
    names = set(FilterModule().filters())
    assert names == {
        "fabric_host",
        "fabric_role_hosts",
        "fabric_hosts_entries",
        "fabric_rack_routes",
        "fabric_control_addresses",
    }
