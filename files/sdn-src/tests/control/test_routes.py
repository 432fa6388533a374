"""Route table: import by route target, best path, ECMP, and the changes it reports."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from vrstack.control.routes import Path, RouteTable
from vrstack.control.xmpp import Nexthop

T_BLUE, T_RED, T_GREEN = "target:64512:1", "target:64512:2", "target:64512:3"
P = "198.18.10.3/32"


def hop(last: int, label: int = 16) -> Nexthop:
    return Nexthop(f"198.18.2.{last}", label, 0, ("MPLSoUDP",))


def table() -> RouteTable:
    t = RouteTable()
    t.configure("blue", [T_BLUE, T_RED], [T_BLUE], T_BLUE, 1)  # blue imports red
    t.configure("red", [T_RED], [T_RED], T_RED, 2)
    t.configure("green", [T_GREEN], [T_GREEN], T_GREEN, 3)
    return t


def test_local_path_is_seen_by_its_instance_and_importers_only() -> None:
    t = table()
    changes = t.add("198.18.11.3/32", Path("agent:c1", hop(11), instance="red"))
    assert sorted((i, p) for i, p, _ in changes) == [
        ("blue", "198.18.11.3/32"),
        ("red", "198.18.11.3/32"),
    ]
    assert t.instances["green"].view == {}
    # blue's own route does not go into red (red does not import blue's target).
    t.add(P, Path("agent:c1", hop(11), instance="blue"))
    assert P not in t.instances["red"].view


def test_bgp_paths_import_by_target() -> None:
    t = table()
    t.add(P, Path("bgp:198.18.0.2", hop(12), targets=frozenset({T_RED}), rd="198.18.0.2:1"))
    assert set(t.instances["red"].view) == set(t.instances["blue"].view) == {P}
    assert t.instances["green"].view == {}
    # Import lists change: green starts importing red's target.
    changes = t.configure("green", [T_GREEN, T_RED], [T_GREEN], T_GREEN, 3)
    assert changes == [("green", P, (hop(12),))]


def test_best_path_and_ecmp() -> None:
    t = table()
    t.add(P, Path("agent:c1", hop(11), instance="blue"))
    t.add(P, Path("bgp:198.18.0.2", hop(12), targets=frozenset({T_BLUE}), rd="a:1", local_pref=100))
    assert t.instances["blue"].view[P] == (hop(11), hop(12))  # equal preference: ECMP
    t.add(P, Path("bgp:198.18.0.3", hop(13), targets=frozenset({T_BLUE}), rd="b:1", local_pref=200))
    assert t.instances["blue"].view[P] == (hop(13),)  # higher local preference wins
    t.remove(P, "bgp:198.18.0.3", "b:1")
    longer = Path("bgp:198.18.0.4", hop(14), targets=frozenset({T_BLUE}), rd="c:1", as_path_len=2)
    t.add(P, longer)
    assert t.instances["blue"].view[P] == (hop(11), hop(12))  # longer AS path loses


def test_same_nexthop_from_two_sources_is_one_nexthop() -> None:
    t = table()
    t.add(P, Path("agent:c1", hop(11, 17), instance="blue"))
    t.add(P, Path("bgp:198.18.0.2", hop(11, 17), targets=frozenset({T_BLUE}), rd="x:1"))
    assert t.instances["blue"].view[P] == (hop(11, 17),)
    # Either source alone keeps the route: no change reported when one goes.
    assert t.remove_source("bgp:198.18.0.2") == []
    assert t.remove_source("agent:c1") == [("blue", P, ())]
    assert t.paths == {}


def test_unconfigured_instance_and_reconfigure() -> None:
    t = table()
    t.add(P, Path("agent:c1", hop(11), instance="red"))
    assert P in t.instances["blue"].view
    changes = t.unconfigure("blue")
    assert ("blue", P, ()) in changes
    assert t.configure("red", [T_RED], [T_RED], T_RED, 2) == []  # unchanged: nothing to do


TARGETS = [T_BLUE, T_RED, T_GREEN]
ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("local"),
            st.sampled_from(["blue", "red", "green", "new"]),
            st.integers(0, 3),
            st.integers(11, 13),
        ),
        st.tuples(
            st.just("bgp"),
            st.sets(st.sampled_from(TARGETS)),
            st.integers(0, 3),
            st.integers(11, 13),
        ),
        st.tuples(st.just("drop"), st.integers(11, 13)),
        st.tuples(
            st.just("config"),
            st.sampled_from(["blue", "red", "green"]),
            st.sets(st.sampled_from(TARGETS)),
            st.sets(st.sampled_from(TARGETS)),
        ),
    ),
    max_size=30,
)


@settings(deadline=None, max_examples=150)
@given(ops)
def test_views_match_a_full_recomputation(steps: list[tuple[object, ...]]) -> None:
    """The incremental views equal best() computed for every instance and prefix."""
    t = table()
    for step in steps:
        kind = step[0]
        if kind == "local":
            _, inst, p, h = step
            t.add(f"198.18.10.{p}/32", Path(f"agent:c{h}", hop(int(h)), instance=str(inst)))  # type: ignore[call-overload]
        elif kind == "bgp":
            _, targets, p, h = step
            path = Path(f"bgp:198.18.0.{h}", hop(int(h)), targets=frozenset(targets), rd="x:1")  # type: ignore[arg-type, call-overload]
            t.add(f"198.18.10.{p}/32", path)
        elif kind == "drop":
            t.remove_source(f"agent:c{step[1]}")
            t.remove_source(f"bgp:198.18.0.{step[1]}")
        else:
            _, inst, imports, exports = step
            t.configure(str(inst), imports, exports, "", 1)  # type: ignore[arg-type]
        for inst_obj in t.instances.values():
            want = {p: hops for p in t.paths if (hops := t.best(inst_obj, p))}
            assert inst_obj.view == want, (inst_obj.name, step)
