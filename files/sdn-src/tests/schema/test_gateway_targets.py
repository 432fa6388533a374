"""Networks routed outside: global-config's gateway_route_targets in the compiled
routing instances (external networks both ways, networks behind their routers import
only), and the field's validation in the config model."""

from __future__ import annotations

from typing import Any

import pytest
from test_compiler import GC, net
from test_routers_compile import router

from vrstack.agent.flows import DROP, decide
from vrstack.config.fields import FieldError
from vrstack.config.model import GLOBAL_CONFIG
from vrstack.schema.compiler import compile_config

JSON = dict[str, Any]
GW = "target:64512:9000"
GC_GW = {**GC, "gateway_route_targets": [GW]}


def targets(out: Any, uid: str) -> tuple[set[str], set[str]]:
    ri = out[uid].routing_instance
    return set(ri["import_targets"]), set(ri["export_targets"])


def own(out: Any, uid: str) -> str:
    return str(out[uid].routing_instance["route_target"])


def test_an_external_network_exports_and_imports_the_gateway_target() -> None:
    nets = {"e": net("e", "198.18.100.0/24", external=True), "p": net("p", "198.18.1.0/24")}
    out = compile_config(GC_GW, nets, {}, {})
    assert targets(out, "e") == ({own(out, "e"), GW}, {own(out, "e"), GW})
    # The route target stays the network's own: the gateway's is only an extra.
    assert own(out, "e") == "target:64512:8000000"
    assert targets(out, "p") == ({own(out, "p")}, {own(out, "p")})


def test_without_gateway_targets_an_external_network_keeps_its_own_only() -> None:
    nets = {"e": net("e", "198.18.100.0/24", external=True)}
    for gc in (GC, {**GC, "gateway_route_targets": []}):
        out = compile_config(gc, nets, {}, {})
        assert targets(out, "e") == ({own(out, "e")}, {own(out, "e")})


def test_several_gateway_targets_are_all_used_in_a_stable_order() -> None:
    gws = ["target:64512:9001", "target:64700:7"]
    nets = {"e": net("e", "198.18.100.0/24", external=True)}
    out = compile_config({**GC, "gateway_route_targets": gws}, nets, {}, {})
    ri = out["e"].routing_instance
    assert ri["export_targets"] == ri["import_targets"] == sorted([own(out, "e"), *gws])


def test_a_network_behind_a_router_to_the_outside_imports_but_never_exports_it() -> None:
    nets = {
        "e": net("e", "198.18.100.0/24", external=True),
        "a": net("a", "198.18.1.0/24"),
        "b": net("b", "198.18.2.0/24"),
        "c": net("c", "198.18.3.0/24"),
    }
    routers = {"r": router("r", ["a", "b"], gateway="e"), "s": router("s", ["c"])}
    out = compile_config(GC_GW, nets, {}, {}, routers)
    for uid in "ab":
        imp, exp = targets(out, uid)
        assert {own(out, "e"), GW} <= imp  # the external network's and the outside's routes
        assert exp == {own(out, uid)}  # its private prefixes never reach the gateway
    assert targets(out, "c") == ({own(out, "c")}, {own(out, "c")})  # no external gateway
    # The ACL still lets no private address out: only floating IPs reach the outside.
    entries = out["a"].acl["entries"]
    verdict = decide(entries, ["198.18.1.0/24"], "198.18.1.5", "198.18.128.9", 6, 1000, 80)
    assert verdict[0] == DROP


def test_a_router_gateway_on_a_non_external_network_brings_no_gateway_target() -> None:
    nets = {"x": net("x", "198.18.100.0/24"), "a": net("a", "198.18.1.0/24")}
    out = compile_config(GC_GW, nets, {}, {}, {"r": router("r", ["a"], gateway="x")})
    assert GW not in targets(out, "a")[0] | targets(out, "x")[0]


def test_gateway_targets_do_not_change_the_allocation_of_network_targets() -> None:
    nets = {u: net(u, f"198.18.{i}.0/24", external=u == "b") for i, u in enumerate("abc")}
    before = compile_config(GC, nets, {}, {})
    after = compile_config(GC_GW, nets, {}, {})
    assert [own(after, u) for u in "abc"] == [own(before, u) for u in "abc"]


def _global(**fields: Any) -> JSON:
    body: JSON = {"asn": 64512, "route_target_range": [8000000, 8999999], **fields}
    return GLOBAL_CONFIG.validate(body)


def test_the_model_defaults_gateway_targets_to_none() -> None:
    assert _global()["gateway_route_targets"] == []
    assert _global(gateway_route_targets=[GW])["gateway_route_targets"] == [GW]


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        (["64512:9000"], "gateway_route_targets[0]", "must match"),
        ([GW, "target:64512:x"], "gateway_route_targets[1]", "must match"),
        ([GW, GW], "gateway_route_targets[1]", "duplicates an earlier item"),
        ("target:64512:9000", "gateway_route_targets", "must be a list"),
        (["target:64512:8000001"], "gateway_route_targets[0]", "inside route_target_range"),
    ],
)
def test_the_model_refuses_bad_gateway_targets(value: Any, field: str, message: str) -> None:
    with pytest.raises(FieldError) as err:
        _global(gateway_route_targets=value)
    assert err.value.field == field
    assert message in err.value.message


def test_a_target_of_another_asn_may_use_numbers_inside_the_range() -> None:
    assert _global(gateway_route_targets=["target:64700:8000001"])
