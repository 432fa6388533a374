"""Port records: validation naming the field, the file they persist to, and capacity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vrstack.agent.agent import Agent, AgentSettings
from vrstack.agent.ports import Port, PortError, PortStore, read_dir
from vrstack.agent.program import Fabric

GOOD = {"id": "p1", "instance": "demo:blue:blue", "network": "blue", "mac": "02:00:00:00:00:01"}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"mac": "02:00"}, "mac"),
        ({"ips": ["198.18.1.300"]}, "ips[0]"),
        ({"ips": "198.18.1.3"}, "ips"),
        ({"id": ""}, "id"),
        ({"instance": "a b"}, "instance"),
        ({"tap": "x" * 16}, "tap"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_port_names_the_field(change: dict[str, object], field: str) -> None:
    with pytest.raises(PortError) as err:
        Port.from_dict({**GOOD, **change})
    assert str(err.value).startswith(f"{field}:")


def test_store_persists_and_reloads(tmp_path: Path) -> None:
    path = str(tmp_path / "ports.json")
    store = PortStore(path)
    store.put(Port.from_dict({**GOOD, "ips": ["198.18.1.3"], "mac": "02:00:00:00:00:AA"}))
    store.put(Port.from_dict({**GOOD, "id": "p2"}))
    assert store.delete("p2") and not store.delete("p2")
    again = PortStore(path)
    assert list(again.ports) == ["p1"]
    assert again.ports["p1"].mac == "02:00:00:00:00:aa"
    assert again.ports["p1"].ips == ("198.18.1.3",)
    (tmp_path / "bad.json").write_text(json.dumps({"ports": [{"id": "x"}]}))
    with pytest.raises(PortError, match=r"bad\.json"):
        PortStore(str(tmp_path / "bad.json"))


def test_no_more_ports_than_labels() -> None:
    s = AgentSettings("c1", Fabric("198.18.2.11"), [("127.0.0.1", 1)], "/nonexistent")
    s.label_range = (100, 101)
    agent = Agent(s)
    agent.add_port(Port.from_dict(GOOD))
    agent.add_port(Port.from_dict({**GOOD, "id": "p2"}))
    agent.add_port(Port.from_dict({**GOOD, "id": "p2", "tap": "t2"}))  # an update fits
    with pytest.raises(ValueError, match="no room"):
        agent.add_port(Port.from_dict({**GOOD, "id": "p3"}))
    with pytest.raises(ValueError, match="instance"):
        agent.add_port(Port.from_dict({**GOOD, "instance": "demo:red:red"}))
    st = agent.state()
    assert sorted(st.labels.values()) == [100, 101]


def test_a_port_without_instance_waits_for_its_network_routing_instance() -> None:
    """Placed from the pushed config (the routing instance whose parent is the port's
    network, by uuid or name); unplaced ports have no VRF but keep their label."""
    s = AgentSettings("c1", Fabric("198.18.2.11"), [("127.0.0.1", 1)], "/nonexistent")
    agent = Agent(s)
    net = "3f1c9a52-8e2d-4b67-a1f0-5c4d3e2b1a90"
    agent.add_port(Port.from_dict({**GOOD, "instance": "", "network": net}))
    agent.add_port(Port.from_dict({**GOOD, "id": "p2", "instance": "", "network": "red"}))
    assert agent.state().ports == {}
    assert agent.interfaces()[0]["vrf"] is None
    pushed = {
        "virtual-network/n1": {"uuid": net, "name": "blue"},
        "virtual-network/n2": {"uuid": "n2", "name": "red"},
        "routing-instance/r1": {"parent_uuid": net, "fq_name": ["demo", "blue", "blue"]},
        "routing-instance/r2": {"parent_uuid": "n2", "fq_name": ["demo", "red", "red"]},
    }
    agent.sessions[0].config.update(pushed)
    agent.sessions[0].on_change()  # what the session does after a push
    st = agent.state()
    assert {p: st.ports[p].instance for p in st.ports} == {
        "p1": "demo:blue:blue",
        "p2": "demo:red:red",
    }
    # Plugged again without an instance: accepted. Into another network: refused.
    agent.add_port(Port.from_dict({**GOOD, "instance": "", "network": net}))
    with pytest.raises(ValueError, match="network: port p1 is in"):
        agent.add_port(Port.from_dict({**GOOD, "instance": "", "network": "n2"}))


def test_replug_without_instance_keeps_the_instance_it_had() -> None:
    s = AgentSettings("c1", Fabric("198.18.2.11"), [("127.0.0.1", 1)], "/nonexistent")
    agent = Agent(s)
    agent.add_port(Port.from_dict(GOOD))
    agent.add_port(Port.from_dict({**GOOD, "instance": ""}))
    assert agent.ports.ports["p1"].instance == "demo:blue:blue"


def test_os_vif_records_are_read_and_bad_ones_named(tmp_path: Path) -> None:
    (tmp_path / "p1.json").write_text(json.dumps({**GOOD, "instance": ""}))
    (tmp_path / "p2.json").write_text(json.dumps({"id": "p2"}))
    (tmp_path / "p3.json").write_text("{not json")
    ports, errors = read_dir(str(tmp_path))
    assert [p.id for p in ports] == ["p1"] and ports[0].instance == ""
    assert [e.split(":")[0] for e in errors] == [
        str(tmp_path / "p2.json"),
        str(tmp_path / "p3.json"),
    ]
    assert read_dir(str(tmp_path / "none")) == ([], [])
