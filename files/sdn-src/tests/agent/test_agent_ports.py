"""Port records: validation naming the field, the file they persist to, and capacity."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vrstack.agent.agent import Agent, AgentSettings
from vrstack.agent.ports import Port, PortError, PortStore
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
