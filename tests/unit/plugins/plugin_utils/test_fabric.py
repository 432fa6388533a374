"""The fabric model: what it computes from a good file and the exact message for each mistake."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from ansible_collections.vrstack.cloud.plugins.plugin_utils.fabric import (
    FabricError,
    build_model,
    gateway_host_vars,
    groups,
    host_vars,
)

SRC = "site/fabric.yml"


def base() -> dict[str, Any]:
    return {
        "plugin": "vrstack.cloud.fabric",
        "cluster": {
            "name": "site1",
            "asn": 64512,
            "ha": True,
            "loopback_pool": "198.18.255.0/24",
            "vips": {"internal": "198.18.1.10"},
        },
        "spine": {"name": "spine", "asn": 64600, "link_pool": "198.18.0.0/24"},
        "racks": {
            "rack1": {
                "subnet": "198.18.1.0/24",
                "gateway": "198.18.1.1",
                "tor_asn": 64601,
                "reserved": 15,
            },
            "rack2": {
                "subnet": "198.18.2.0/24",
                "gateway": "198.18.2.1",
                "tor_asn": 64602,
                "reserved": 15,
            },
        },
        "hosts": {
            "ctl1": {"rack": "rack1", "roles": ["controller", "database", "control"]},
            "ctl2": {"rack": "rack2", "roles": ["control"]},
            "cmp1": {"rack": "rack1", "roles": ["compute"]},
            "cmp2": {"rack": "rack2", "roles": ["compute"], "address": "198.18.2.40"},
            "cmp3": {"rack": "rack1", "roles": ["compute"]},
        },
    }


def model_of(change: Callable[[dict], None] | None = None) -> dict[str, Any]:
    data = base()
    if change:
        change(data)
    return build_model(data, SRC)


# ---- what a good file yields ------------------------------------------------------------


def test_addresses_are_allocated_in_file_order_after_reserved() -> None:
    hosts = model_of()["hosts"]
    assert hosts["ctl1"]["fabric_ip"] == "198.18.1.16"
    assert hosts["cmp1"]["fabric_ip"] == "198.18.1.17"
    assert hosts["cmp3"]["fabric_ip"] == "198.18.1.18"
    assert hosts["ctl2"]["fabric_ip"] == "198.18.2.16"
    assert hosts["cmp2"]["fabric_ip"] == "198.18.2.40"  # pinned


def test_allocation_skips_gateway_vips_and_pinned_addresses() -> None:
    def change(d: dict) -> None:
        d["racks"]["rack1"]["reserved"] = 0
        d["cluster"]["vips"]["internal"] = "198.18.1.2"
        d["hosts"]["cmp3"]["address"] = "198.18.1.4"

    hosts = model_of(change)["hosts"]
    assert [hosts[h]["fabric_ip"] for h in ("ctl1", "cmp1", "cmp3")] == [
        "198.18.1.3",
        "198.18.1.5",
        "198.18.1.4",
    ]


def test_adding_a_host_at_the_end_keeps_existing_addresses() -> None:
    before = model_of()["hosts"]

    def change(d: dict) -> None:
        d["hosts"]["cmp9"] = {"rack": "rack1", "roles": ["compute"]}

    after = model_of(change)["hosts"]
    for name, host in before.items():
        assert after[name]["fabric_ip"] == host["fabric_ip"]
        assert after[name]["loopback_ip"] == host["loopback_ip"]
    assert after["cmp9"]["fabric_ip"] == "198.18.1.19"


def test_loopbacks_come_from_the_pool_in_host_order() -> None:
    hosts = model_of()["hosts"]
    assert [h["loopback_ip"] for h in hosts.values()] == [f"198.18.255.{i}" for i in range(1, 6)]


def test_computes_get_two_control_nodes_in_different_racks_local_first() -> None:
    hosts = model_of()["hosts"]
    assert hosts["cmp1"]["control_nodes"] == ["ctl1", "ctl2"]
    assert hosts["cmp2"]["control_nodes"] == ["ctl2", "ctl1"]
    assert hosts["cmp3"]["control_nodes"][0] == "ctl1"
    assert hosts["ctl1"]["control_nodes"] == []


def test_computes_are_spread_over_control_nodes_of_a_rack() -> None:
    def change(d: dict) -> None:
        d["hosts"]["ctl3"] = {"rack": "rack1", "roles": ["control"]}

    hosts = model_of(change)["hosts"]
    primaries = {hosts[c]["control_nodes"][0] for c in ("cmp1", "cmp3")}
    assert primaries == {"ctl1", "ctl3"}
    for compute in ("cmp1", "cmp2", "cmp3"):
        pair = hosts[compute]["control_nodes"]
        assert len(pair) == 2
        assert hosts[pair[0]]["rack"] != hosts[pair[1]]["rack"]


def test_single_control_node_without_ha_gives_one_session() -> None:
    def change(d: dict) -> None:
        d["cluster"]["ha"] = False
        del d["hosts"]["ctl2"]

    assert model_of(change)["hosts"]["cmp2"]["control_nodes"] == ["ctl1"]


def test_spine_links_are_31s_per_rack_then_deploy() -> None:
    spine = model_of()["spine"]
    assert spine["links"] == {
        "rack1": {"spine_ip": "198.18.0.0", "tor_ip": "198.18.0.1", "prefixlen": 31},
        "rack2": {"spine_ip": "198.18.0.2", "tor_ip": "198.18.0.3", "prefixlen": 31},
        "deploy": {"spine_ip": "198.18.0.4", "host_ip": "198.18.0.5", "prefixlen": 31},
    }


def test_defaults_for_ranges_encaps_and_os() -> None:
    model = model_of()
    assert model["encap_priority"] == ["MPLSoUDP", "MPLSoGRE", "VXLAN"]
    assert model["route_target_range"] == [8000000, 8999999]
    assert model["mpls_label_range"] == [16, 1048575]
    assert model["vni_range"] == [1, 16777215]
    assert {h["os"] for h in model["hosts"].values()} == {"debian12"}


def test_host_vars_and_groups() -> None:
    model = model_of()
    hv = host_vars(model, "cmp2")
    assert hv["ansible_host"] == "198.18.2.40"
    assert hv["vrstack_fabric_cidr"] == "198.18.2.0/24"
    assert hv["vrstack_fabric_prefixlen"] == 24
    assert hv["vrstack_fabric_gateway"] == "198.18.2.1"
    assert hv["vrstack_bgp_asn"] == 64512
    assert hv["vrstack_tor_asn"] == 64602
    assert hv["vrstack_control_nodes"] == ["ctl2", "ctl1"]
    ctl1 = model["hosts"]["ctl1"]["fabric_ip"]
    assert hv["vrstack_endpoints"]["api"] == ctl1
    assert hv["vrstack_endpoints"]["database"] == ctl1
    assert hv["vrstack_endpoints"]["messaging"] == []


def test_endpoints_use_the_vip_when_a_role_has_several_hosts() -> None:
    def change(d: dict) -> None:
        d["hosts"]["ctl2"]["roles"] = ["controller", "control", "messaging"]
        d["hosts"]["cmp3"]["roles"] = ["compute", "messaging"]

    model = model_of(change)
    ep = model["endpoints"]
    assert ep["api"] == "198.18.1.10"
    assert ep["database"] == model["hosts"]["ctl1"]["fabric_ip"]
    # Clients list every broker (oslo.messaging fails over itself), in file order.
    assert ep["messaging"] == [
        model["hosts"]["ctl2"]["fabric_ip"],
        model["hosts"]["cmp3"]["fabric_ip"],
    ]
    assert ep["memcached"] == [
        model["hosts"]["ctl1"]["fabric_ip"],
        model["hosts"]["ctl2"]["fabric_ip"],
    ]
    grp = groups(model)
    assert grp["compute"] == ["cmp1", "cmp2", "cmp3"]
    assert grp["control"] == ["ctl1", "ctl2"]
    assert grp["rack_rack2"] == ["ctl2", "cmp2"]
    assert grp["os_debian12"] == list(model["hosts"])
    assert grp["os_freebsd14"] == []


def test_endpoints_skip_the_vip_with_one_controller() -> None:
    # haproxy and keepalived run on the controllers, so with one controller nothing
    # holds the VIP: several analytics hosts are reached at the first one.
    def change(d: dict) -> None:
        d["hosts"]["ctl2"]["roles"] = ["control", "analytics"]
        d["hosts"]["cmp3"]["roles"] = ["compute", "analytics"]

    model = model_of(change)
    assert [n for n, h in model["hosts"].items() if "controller" in h["roles"]] == ["ctl1"]
    assert model["endpoints"]["analytics"] == model["hosts"]["ctl2"]["fabric_ip"]
    assert model["endpoints"]["api"] == model["hosts"]["ctl1"]["fabric_ip"]


def test_sdn_api_urls_are_https_on_the_endpoint() -> None:
    """One place for the SDN APIs' URLs: scheme, endpoint (the VIP when several) and port."""

    def several(d: dict) -> None:
        d["hosts"]["ctl2"]["roles"] = ["controller", "control", "analytics"]
        d["hosts"]["cmp3"]["roles"] = ["compute", "analytics"]

    ep = model_of(several)["endpoints"]
    assert ep["api_url"] == "https://198.18.1.10:8082"
    assert ep["analytics_url"] == "https://198.18.1.10:8081"
    one = model_of()
    ctl1 = one["hosts"]["ctl1"]["fabric_ip"]
    assert one["sdn_tls"] is True
    assert one["endpoints"]["api_url"] == f"https://{ctl1}:8082"
    assert one["endpoints"]["analytics_url"] is None  # no analytics host in the base file


def test_sdn_tls_false_gives_plain_urls_and_must_be_a_boolean() -> None:
    def plain(d: dict) -> None:
        d["cluster"]["sdn_tls"] = False

    model = model_of(plain)
    assert model["sdn_tls"] is False
    assert model["endpoints"]["api_url"].startswith("http://")
    assert model["endpoints"]["api_url"].endswith(":8082")

    def bad(d: dict) -> None:
        d["cluster"]["sdn_tls"] = "yes"

    with pytest.raises(FabricError, match="field 'sdn_tls': 'yes' must be true or false"):
        model_of(bad)


def test_openstack_urls_are_https_unless_openstack_tls_is_false() -> None:
    """One place for the OpenStack APIs' scheme and Keystone's URL (issue 11)."""

    def several(d: dict) -> None:
        d["hosts"]["ctl2"]["roles"] = ["controller", "control"]

    ep = model_of(several)["endpoints"]
    assert ep["openstack_scheme"] == "https"
    assert ep["keystone_url"] == "https://198.18.1.10:5000/v3"
    one = model_of()
    ctl1 = one["hosts"]["ctl1"]["fabric_ip"]
    assert one["openstack_tls"] is True
    assert one["endpoints"]["keystone_url"] == f"https://{ctl1}:5000/v3"

    def plain(d: dict) -> None:
        d["cluster"]["openstack_tls"] = False

    off = model_of(plain)
    assert off["openstack_tls"] is False
    assert off["endpoints"]["openstack_scheme"] == "http"
    assert off["endpoints"]["keystone_url"] == f"http://{ctl1}:5000/v3"
    # The SDN APIs keep their own switch.
    assert off["endpoints"]["api_url"] == f"https://{ctl1}:8082"

    def bad(d: dict) -> None:
        d["cluster"]["openstack_tls"] = "on"

    with pytest.raises(FabricError, match="field 'openstack_tls': 'on' must be true or false"):
        model_of(bad)


GATEWAY = {
    "name": "edge1",
    "address": "198.19.0.1",
    "asn": 64700,
    "route_target": 9000,
    "routed_networks": ["198.18.128.0/24"],
}


def _with_gateway(**fields: Any) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        d["gateway"] = {**GATEWAY, **fields}

    return change


def test_gateway_peers_with_every_control_node_by_default() -> None:
    model = model_of(_with_gateway())
    assert model["gateway"] == {
        "name": "edge1",
        "address": "198.19.0.1",
        "asn": 64700,
        "peers": ["ctl1", "ctl2"],
        "route_target": "target:64512:9000",
        "routed_networks": ["198.18.128.0/24"],
        "managed": False,
        "os": "debian12",
    }
    peer = host_vars(model, "ctl2")["vrstack_gateway_peers"]
    assert peer == [
        {
            "name": "edge1",
            "address": "198.19.0.1",
            "asn": 64700,
            "route_target": "target:64512:9000",
            "routed_networks": ["198.18.128.0/24"],
        }
    ]
    assert host_vars(model, "cmp1")["vrstack_gateway_peers"] == []


def test_gateway_peers_can_be_chosen() -> None:
    model = model_of(_with_gateway(peers=["ctl2"]))
    assert model["gateway"]["peers"] == ["ctl2"]
    assert host_vars(model, "ctl1")["vrstack_gateway_peers"] == []
    assert len(host_vars(model, "ctl2")["vrstack_gateway_peers"]) == 1


def test_no_gateway_section_means_no_gateway() -> None:
    model = model_of()
    assert model["gateway"] is None
    assert host_vars(model, "ctl1")["vrstack_gateway_peers"] == []


def test_spine_that_is_also_the_gateway_shares_its_asn() -> None:
    model = model_of(_with_gateway(name="spine", asn=64600))
    assert model["gateway"]["asn"] == model["spine"]["asn"] == 64600


def test_control_nodes_in_one_rack_are_fine_with_a_single_rack() -> None:
    def change(d: dict) -> None:
        del d["racks"]["rack2"]
        d["hosts"] = {n: {**h, "rack": "rack1"} for n, h in d["hosts"].items()}
        d["hosts"]["cmp2"].pop("address")

    model = model_of(change)
    assert model["hosts"]["cmp1"]["control_nodes"] == ["ctl1", "ctl2"]


def test_freebsd_host() -> None:
    def change(d: dict) -> None:
        d["hosts"]["cmp3"]["os"] = "freebsd14"

    model = model_of(change)
    assert groups(model)["os_freebsd14"] == ["cmp3"]


# ---- every mistake, with its exact message -----------------------------------------------


def _set(path: str, value: Any) -> Callable[[dict], None]:
    def change(d: dict) -> None:
        *parents, last = path.split(".")
        node = d
        for key in parents:
            node = node[key]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()

ERRORS: list[tuple[str, Callable[[dict], None], str]] = [
    (
        "overlapping subnets",
        lambda d: d["racks"].__setitem__(
            "rack2", {"subnet": "198.18.1.128/25", "gateway": "198.18.1.129"}
        ),
        "site/fabric.yml: rack 'rack2', field 'subnet': 198.18.1.128/25 overlaps "
        "rack 'rack1' subnet 198.18.1.0/24",
    ),
    (
        "subnet overlapping the loopback pool",
        _set("cluster.loopback_pool", "198.18.2.0/26"),
        "site/fabric.yml: cluster, field 'loopback_pool': 198.18.2.0/26 overlaps "
        "rack 'rack2' subnet 198.18.2.0/24",
    ),
    (
        "malformed subnet",
        _set("racks.rack1.subnet", "198.18.1.0/33"),
        "site/fabric.yml: rack 'rack1', field 'subnet': '198.18.1.0/33' is not a network "
        "in CIDR form (e.g. 198.18.1.0/24)",
    ),
    (
        "subnet with host bits",
        _set("racks.rack1.subnet", "198.18.1.7/24"),
        "site/fabric.yml: rack 'rack1', field 'subnet': 198.18.1.7/24 has host bits set; "
        "did you mean 198.18.1.0/24?",
    ),
    (
        "subnet without prefix",
        _set("racks.rack1.subnet", "198.18.1.0"),
        "site/fabric.yml: rack 'rack1', field 'subnet': '198.18.1.0' has no prefix length "
        "(e.g. 198.18.1.0/24)",
    ),
    (
        "two hosts pinned to one address",
        lambda d: (
            d["hosts"]["cmp1"].__setitem__("address", "198.18.1.50"),
            d["hosts"]["cmp3"].__setitem__("address", "198.18.1.50"),
        ),
        "site/fabric.yml: host 'cmp3', field 'address': 198.18.1.50 is already the address "
        "of host 'cmp1'",
    ),
    (
        "address equal to the gateway",
        _set("hosts.cmp1.address", "198.18.1.1"),
        "site/fabric.yml: host 'cmp1', field 'address': 198.18.1.1 is already the gateway "
        "of rack 'rack1'",
    ),
    (
        "address equal to a VIP",
        _set("hosts.cmp1.address", "198.18.1.10"),
        "site/fabric.yml: host 'cmp1', field 'address': 198.18.1.10 is already VIP 'internal'",
    ),
    (
        "out-of-subnet address",
        _set("hosts.cmp1.address", "198.18.9.5"),
        "site/fabric.yml: host 'cmp1', field 'address': 198.18.9.5 is outside rack 'rack1' "
        "subnet 198.18.1.0/24",
    ),
    (
        "broadcast address",
        _set("hosts.cmp1.address", "198.18.1.255"),
        "site/fabric.yml: host 'cmp1', field 'address': 198.18.1.255 is outside rack 'rack1' "
        "subnet 198.18.1.0/24",
    ),
    (
        "malformed address",
        _set("hosts.cmp1.address", "198.18.1"),
        "site/fabric.yml: host 'cmp1', field 'address': '198.18.1' is not an IP address",
    ),
    (
        "unknown role",
        _set("hosts.cmp1.roles", ["compute", "storage"]),
        "site/fabric.yml: host 'cmp1', field 'roles': unknown role 'storage'; known roles: "
        "controller, database, messaging, control, analytics, compute",
    ),
    (
        "no roles",
        _set("hosts.cmp1.roles", []),
        "site/fabric.yml: host 'cmp1', field 'roles': must be a non-empty list of: "
        "controller, database, messaging, control, analytics, compute",
    ),
    (
        "rack with no gateway",
        _set("racks.rack2.gateway", _DELETE),
        "site/fabric.yml: rack 'rack2', field 'gateway': is required: every rack needs a "
        "gateway (its ToR address)",
    ),
    (
        "gateway outside its subnet",
        _set("racks.rack2.gateway", "198.18.3.1"),
        "site/fabric.yml: rack 'rack2', field 'gateway': 198.18.3.1 is not a usable address "
        "of subnet 198.18.2.0/24",
    ),
    (
        "fewer than two control nodes with HA",
        _set("hosts.ctl2.roles", ["analytics"]),
        "site/fabric.yml: cluster, field 'ha': HA needs at least two hosts with role "
        "'control'; found 1 (ctl1)",
    ),
    (
        "both control nodes in one rack (HA)",
        _set("hosts.ctl2.rack", "rack1"),
        "site/fabric.yml: host 'ctl2', field 'rack': control nodes ctl1, ctl2 are all in rack "
        "'rack1'; put one in another rack so that losing a rack leaves every compute a "
        "control node",
    ),
    (
        "both control nodes in one rack (no HA)",
        lambda d: (_set("hosts.ctl2.rack", "rack1")(d), _set("cluster.ha", False)(d)),
        "site/fabric.yml: host 'ctl2', field 'rack': control nodes ctl1, ctl2 are all in rack "
        "'rack1'; put one in another rack so that losing a rack leaves every compute a "
        "control node",
    ),
    (
        "several racks without a spine",
        _set("spine", _DELETE),
        "site/fabric.yml: file, field 'spine': is required: 2 racks (rack1, rack2) route to "
        "each other only through a spine",
    ),
    (
        "rack without an uplink to the spine",
        _set("racks.rack2.uplink", False),
        "site/fabric.yml: rack 'rack2', field 'uplink': is false: the rack has no route to "
        "spine 'spine' and so none to the other racks; a site with several racks needs every "
        "rack uplinked",
    ),
    (
        "two racks with one ToR ASN",
        _set("racks.rack2.tor_asn", 64601),
        "site/fabric.yml: rack 'rack2', field 'tor_asn': 64601 is already the ASN of "
        "rack 'rack1'; each needs its own",
    ),
    (
        "spine with the cluster's ASN",
        _set("spine.asn", 64512),
        "site/fabric.yml: spine, field 'asn': 64512 is already the ASN of the cluster "
        "(cluster.asn); each needs its own",
    ),
    (
        "rack with the cluster's ASN",
        _set("racks.rack1.tor_asn", 64512),
        "site/fabric.yml: rack 'rack1', field 'tor_asn': 64512 is already the ASN of the "
        "cluster (cluster.asn); each needs its own",
    ),
    (
        "gateway with a rack's ASN",
        _with_gateway(asn=64602),
        "site/fabric.yml: rack 'rack2', field 'tor_asn': 64602 is already the ASN of "
        "gateway 'edge1'; each needs its own",
    ),
    (
        "gateway with the cluster's ASN",
        _with_gateway(asn=64512),
        "site/fabric.yml: gateway, field 'asn': 64512 is already the ASN of the cluster "
        "(cluster.asn); each needs its own",
    ),
    (
        "gateway with the spine's ASN under another name",
        _with_gateway(asn=64600),
        "site/fabric.yml: gateway, field 'asn': 64600 is already the ASN of spine 'spine'; "
        "each needs its own",
    ),
    (
        "two hosts pinned to one loopback",
        lambda d: (
            d["hosts"]["cmp1"].__setitem__("loopback", "198.18.255.9"),
            d["hosts"]["cmp3"].__setitem__("loopback", "198.18.255.9"),
        ),
        "site/fabric.yml: host 'cmp3', field 'loopback': 198.18.255.9 is already the loopback "
        "of host 'cmp1'",
    ),
    (
        "loopback equal to a host's fabric address",
        _set("hosts.cmp1.loopback", "198.18.2.40"),
        "site/fabric.yml: host 'cmp1', field 'loopback': 198.18.2.40 is already the address "
        "of host 'cmp2'",
    ),
    (
        "loopback equal to the VIP",
        _set("hosts.cmp1.loopback", "198.18.1.10"),
        "site/fabric.yml: host 'cmp1', field 'loopback': 198.18.1.10 is already VIP 'internal'",
    ),
    (
        "VIP in a rack without a controller",
        _set("cluster.vips.internal", "198.18.2.10"),
        "site/fabric.yml: cluster, field 'vips.internal': 198.18.2.10 is not a usable address "
        "of a rack subnet with a controller (rack1: 198.18.1.0/24)",
    ),
    (
        "VIP equal to a rack's broadcast address",
        _set("cluster.vips.internal", "198.18.1.255"),
        "site/fabric.yml: cluster, field 'vips.internal': 198.18.1.255 is not a usable address "
        "of a rack subnet with a controller (rack1: 198.18.1.0/24)",
    ),
    (
        "VIP equal to a rack gateway",
        _set("cluster.vips.internal", "198.18.1.1"),
        "site/fabric.yml: cluster, field 'vips.internal': 198.18.1.1 is already the gateway "
        "of rack 'rack1'",
    ),
    (
        "gateway address equal to a host's",
        _with_gateway(address="198.18.1.16"),
        "site/fabric.yml: gateway, field 'address': 198.18.1.16 is already the address of "
        "host 'ctl1'",
    ),
    (
        "gateway address equal to a spine link's",
        _with_gateway(address="198.18.0.1"),
        "site/fabric.yml: gateway, field 'address': 198.18.0.1 is already a spine link address",
    ),
    (
        "gateway peering with a compute",
        _with_gateway(peers=["ctl1", "cmp1"]),
        "site/fabric.yml: gateway, field 'peers': 'cmp1' is not a host with role 'control'; "
        "control nodes: ctl1, ctl2",
    ),
    (
        "gateway route target inside the networks' range",
        _with_gateway(route_target=8000001),
        "site/fabric.yml: gateway, field 'route_target': 8000001 is inside "
        "cluster.route_target_range [8000000, 8999999], which networks get their own route "
        "targets from; pick a number outside it",
    ),
    (
        "gateway route target too large for a 4-byte cluster ASN",
        lambda d: (_set("cluster.asn", 4200000000)(d), _with_gateway(route_target=70000)(d)),
        "site/fabric.yml: gateway, field 'route_target': 70000 does not fit "
        "target:4200000000:n (a 4-byte ASN leaves n 0-65535)",
    ),
    (
        "gateway without a route target",
        lambda d: (_with_gateway()(d), d["gateway"].pop("route_target")),
        "site/fabric.yml: gateway, field 'route_target': is required (the number n of "
        "target:<cluster asn>:n)",
    ),
    (
        "routed network overlapping a rack",
        _with_gateway(routed_networks=["198.18.1.128/25"]),
        "site/fabric.yml: gateway, field 'routed_networks[0]': 198.18.1.128/25 overlaps "
        "rack 'rack1' subnet 198.18.1.0/24",
    ),
    (
        "misspelt gateway field",
        _with_gateway(peer=["ctl1"]),
        "site/fabric.yml: gateway, field 'peer': unknown field; expected one of: address, asn, "
        "managed, name, peers, route_target, routed_networks",
    ),
    (
        "unsupported OS on a host",
        _set("hosts.cmp1.os", "centos7"),
        "site/fabric.yml: host 'cmp1', field 'os': unsupported OS 'centos7'; supported: "
        "debian12 (Debian 12), freebsd14 (FreeBSD 14)",
    ),
    (
        "unsupported default OS",
        _set("cluster.os", "ubuntu2404"),
        "site/fabric.yml: cluster, field 'os': unsupported OS 'ubuntu2404'; supported: "
        "debian12, freebsd14",
    ),
    (
        "unknown rack",
        _set("hosts.cmp1.rack", "rack7"),
        "site/fabric.yml: host 'cmp1', field 'rack': unknown rack 'rack7'; defined racks: "
        "rack1, rack2",
    ),
    (
        "misspelt host field",
        _set("hosts.cmp1.adress", "198.18.1.30"),
        "site/fabric.yml: host 'cmp1', field 'adress': unknown field; expected one of: "
        "address, loopback, os, rack, roles",
    ),
    (
        "bad ASN",
        _set("cluster.asn", 0),
        "site/fabric.yml: cluster, field 'asn': 0 is not a BGP AS number (1-4294967295)",
    ),
    (
        "missing ASN",
        _set("cluster.asn", _DELETE),
        "site/fabric.yml: cluster, field 'asn': is required (a BGP AS number, 1-4294967295)",
    ),
    (
        "unknown encapsulation",
        _set("cluster.encap_priority", ["MPLSoUDP", "GENEVE"]),
        "site/fabric.yml: cluster, field 'encap_priority': unknown encapsulation 'GENEVE'; "
        "expected one of: MPLSoUDP, MPLSoGRE, VXLAN",
    ),
    (
        "inverted label range",
        _set("cluster.mpls_label_range", [2000, 1000]),
        "site/fabric.yml: cluster, field 'mpls_label_range': [2000, 1000] must satisfy "
        "16 <= first <= last <= 1048575",
    ),
    (
        "VIP outside every rack",
        _set("cluster.vips.internal", "198.18.7.10"),
        "site/fabric.yml: cluster, field 'vips.internal': 198.18.7.10 is not a usable address "
        "of a rack subnet with a controller (rack1: 198.18.1.0/24)",
    ),
    (
        "subnet too small for its hosts",
        _set("racks.rack1.reserved", 253),
        "site/fabric.yml: rack 'rack1', field 'subnet': 198.18.1.0/24 has no free address "
        "left for host 'cmp1'",
    ),
    (
        "spine link pool too small",
        _set("spine.link_pool", "198.18.0.0/30"),
        "site/fabric.yml: spine, field 'link_pool': 198.18.0.0/30 holds 2 /31 links; 3 are "
        "needed (one per rack plus the deploy host)",
    ),
    (
        "missing racks",
        _set("racks", _DELETE),
        "site/fabric.yml: file, field 'racks': is required",
    ),
    (
        "compute without any control node",
        lambda d: (
            d["cluster"].__setitem__("ha", False),
            d["hosts"]["ctl1"].__setitem__("roles", ["controller"]),
            d["hosts"]["ctl2"].__setitem__("roles", ["analytics"]),
            d["hosts"].pop("cmp2"),
            d["hosts"].pop("cmp3"),
        ),
        "site/fabric.yml: host 'cmp1', field 'roles': a compute needs a control node; no host "
        "has role 'control'",
    ),
]


@pytest.mark.parametrize(("what", "change", "message"), ERRORS, ids=[e[0] for e in ERRORS])
def test_each_mistake_has_an_exact_message(
    what: str, change: Callable[[dict], None], message: str
) -> None:
    data = base()
    change(data)
    with pytest.raises(FabricError) as err:
        build_model(data, SRC)
    assert message in err.value.problems, f"{what}: got {err.value.problems}"


def test_all_problems_are_reported_together() -> None:
    data = base()
    data["hosts"]["cmp1"]["roles"] = ["storage"]
    data["hosts"]["cmp3"]["os"] = "centos7"
    del data["racks"]["rack2"]["gateway"]
    with pytest.raises(FabricError) as err:
        build_model(data, SRC)
    assert len(err.value.problems) == 3
    assert str(err.value).count(SRC) == 3


def test_input_is_not_modified() -> None:
    data = base()
    before = copy.deepcopy(data)
    build_model(data, SRC)
    assert data == before


def test_managed_gateway_is_a_host_of_group_gateway() -> None:
    assert groups(model_of(_with_gateway()))["gateway"] == []  # a router we do not configure
    model = model_of(_with_gateway(managed=True))
    assert groups(model)["gateway"] == ["edge1"]
    assert "edge1" not in groups(model)["vrstack"]
    hv = gateway_host_vars(model)
    assert hv["ansible_host"] == "198.19.0.1" and hv["vrstack_roles"] == []
    assert hv["vrstack_gateway"]["neighbors"] == [
        {"name": "ctl1", "address": model["hosts"]["ctl1"]["fabric_ip"]},
        {"name": "ctl2", "address": model["hosts"]["ctl2"]["fabric_ip"]},
    ]
    assert hv["vrstack_gateway"]["cluster_asn"] == 64512


def test_gateway_managed_must_be_a_boolean() -> None:
    with pytest.raises(FabricError, match="field 'managed': 'yes' must be true or false"):
        model_of(_with_gateway(managed="yes"))
