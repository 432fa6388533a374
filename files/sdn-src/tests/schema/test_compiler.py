"""Compilation of networks and policies into routing instances and ACLs (pure functions)."""

from __future__ import annotations

from typing import Any

import pytest

from vrstack.schema.compiler import NotReady, allowed_pairs, compile_config

JSON = dict[str, Any]
GC = {"asn": 64512, "route_target_range": [8000000, 8000009], "vni_range": [100, 199]}


def net(uid: str, cidr: str, policies: list[str] | None = None, **kw: Any) -> JSON:
    return {
        "uuid": uid,
        "name": f"net-{uid}",
        "forwarding_mode": "l2_l3",
        "subnets": [{"cidr": cidr}],
        "network_policies": policies or [],
        **kw,
    }


def rule(action: str, src: str | None, dst: str | None, direction: str = "both", **kw: Any) -> JSON:
    return {
        "action": action,
        "protocol": kw.pop("protocol", "any"),
        "direction": direction,
        "source": {"network": src} if src else {},
        "destination": {"network": dst} if dst else {},
        "source_ports": [0, 65535],
        "destination_ports": [0, 65535],
        **kw,
    }


def ri_of(uid: str, rt: int, vni: int) -> JSON:
    return {
        "uuid": f"ri-{uid}",
        "parent_uuid": uid,
        "route_target": f"target:64512:{rt}",
        "vni": vni,
    }


def test_each_network_gets_its_own_target_and_vni() -> None:
    nets = {u: net(u, f"198.18.{i}.0/24") for i, u in enumerate("abc")}
    out = compile_config(GC, nets, {}, {})
    assert [out[u].routing_instance["route_target"] for u in "abc"] == [
        "target:64512:8000000",
        "target:64512:8000001",
        "target:64512:8000002",
    ]
    assert [out[u].routing_instance["vni"] for u in "abc"] == [100, 101, 102]
    for u in "abc":
        ri = out[u].routing_instance
        assert ri["import_targets"] == ri["export_targets"] == [ri["route_target"]]
        assert ri["subnets"] == [nets[u]["subnets"][0]["cidr"]]
        assert out[u].acl == {"entries": []}


def test_existing_allocations_are_kept() -> None:
    nets = {u: net(u, f"198.18.{i}.0/24") for i, u in enumerate("abc")}
    # b and c were allocated earlier (in another order); a is new and takes the lowest free.
    existing = {"1": ri_of("b", 8000000, 150), "2": ri_of("c", 8000005, 100)}
    out = compile_config(GC, nets, {}, existing)
    assert out["b"].routing_instance["route_target"] == "target:64512:8000000"
    assert out["c"].routing_instance["route_target"] == "target:64512:8000005"
    assert out["a"].routing_instance["route_target"] == "target:64512:8000001"
    assert (out["b"].routing_instance["vni"], out["c"].routing_instance["vni"]) == (150, 100)
    assert out["a"].routing_instance["vni"] == 101


def test_out_of_range_and_duplicate_allocations_are_redone() -> None:
    nets = {u: net(u, f"198.18.{i}.0/24") for i, u in enumerate("ab")}
    existing = {"1": ri_of("a", 7, 100), "2": ri_of("b", 8000003, 100)}
    out = compile_config(GC, nets, {}, existing)
    assert out["a"].routing_instance["route_target"] == "target:64512:8000000"
    assert out["b"].routing_instance["route_target"] == "target:64512:8000003"
    assert {out["a"].routing_instance["vni"], out["b"].routing_instance["vni"]} == {100, 101}


def test_fixed_vni_wins_and_is_never_allocated_twice() -> None:
    nets = {"a": net("a", "198.18.0.0/24"), "b": net("b", "198.18.1.0/24", vni=100)}
    out = compile_config(GC, nets, {}, {"1": ri_of("a", 8000000, 100)})
    assert out["b"].routing_instance["vni"] == 100
    assert out["a"].routing_instance["vni"] == 101


def test_not_ready_without_global_config_or_numbers() -> None:
    with pytest.raises(NotReady):
        compile_config(None, {}, {}, {})
    nets = {str(i): net(str(i), f"198.18.{i}.0/24") for i in range(11)}
    with pytest.raises(NotReady, match="no free number"):
        compile_config(GC, nets, {}, {})


def _connect(policies_a: list[str], policies_b: list[str], pols: dict[str, JSON]) -> tuple:
    nets = {"a": net("a", "198.18.0.0/24", policies_a), "b": net("b", "198.18.1.0/24", policies_b)}
    out = compile_config(GC, nets, pols, {})
    ta, tb = (out[u].routing_instance["route_target"] for u in "ab")
    return (
        tb in out["a"].routing_instance["import_targets"],
        ta in out["b"].routing_instance["import_targets"],
    )


def test_policy_on_both_networks_leaks_routes_both_ways() -> None:
    pols = {"p": {"uuid": "p", "rules": [rule("pass", "a", "b")]}}
    assert _connect(["p"], ["p"], pols) == (True, True)


def test_policy_on_one_network_only_leaks_nothing() -> None:
    pols = {"p": {"uuid": "p", "rules": [rule("pass", "a", "b")]}}
    assert _connect(["p"], [], pols) == (False, False)


def test_forward_rule_leaks_one_way() -> None:
    pols = {"p": {"uuid": "p", "rules": [rule("pass", "a", "b", "forward")]}}
    assert _connect(["p"], ["p"], pols) == (True, False)


def test_first_rule_for_a_pair_decides() -> None:
    pols = {"p": {"uuid": "p", "rules": [rule("deny", "a", "b"), rule("pass", "a", "b")]}}
    assert _connect(["p"], ["p"], pols) == (False, False)
    pols = {
        "p": {"uuid": "p", "rules": [rule("pass", "b", "a", "forward"), rule("deny", "a", "b")]}
    }
    assert allowed_pairs(net("a", "198.18.0.0/24", ["p"]), pols) == {("b", "a")}


def test_acl_entries_follow_policy_order_and_direction() -> None:
    nets = {"a": net("a", "198.18.0.0/24", ["p1", "p2"]), "b": net("b", "198.18.1.0/24")}
    pols = {
        "p1": {
            "uuid": "p1",
            "rules": [
                rule(
                    "pass",
                    "a",
                    "b",
                    protocol="tcp",
                    source_ports=[1024, 65535],
                    destination_ports=[80, 80],
                )
            ],
        },
        "p2": {
            "uuid": "p2",
            "rules": [
                {**rule("deny", None, None, "forward"), "destination": {"cidr": "198.19.0.0/16"}}
            ],
        },
    }
    entries = compile_config(GC, nets, pols, {})["a"].acl["entries"]
    assert [(e["policy"], e["rule"], e["action"]) for e in entries] == [
        ("p1", 0, "pass"),
        ("p1", 0, "pass"),
        ("p2", 0, "deny"),
    ]
    fwd, back, deny = entries
    assert fwd["source"] == ["198.18.0.0/24"] and fwd["destination"] == ["198.18.1.0/24"]
    assert fwd["destination_ports"] == [80, 80] and fwd["source_ports"] == [1024, 65535]
    assert back["source"] == ["198.18.1.0/24"] and back["source_ports"] == [80, 80]
    assert back["source_network"] == "b" and back["destination_network"] == "a"
    assert deny["source"] == [] and deny["destination"] == ["198.19.0.0/16"]
    assert compile_config(GC, nets, pols, {})["b"].acl["entries"] == []
