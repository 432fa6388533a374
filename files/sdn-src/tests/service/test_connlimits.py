"""The connection gate on its own: counts, refusals and their log lines.

The listener tests (tests/control/test_xmpp_robust.py, test_xmpp_tls.py,
tests/config/test_http_limits.py) run it on real sockets; here a transport stand-in
gives the peer address and records the abort, and the clock is set by hand, so the
rate limit of the log lines is checked exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from vrstack.service import connlimits
from vrstack.service.connlimits import ConnLimits, Gate
from vrstack.service.settings import ConfigError, Settings


class Transport:
    """The neighbour: a peer address, and whether the gate aborted the connection."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.aborted = False

    def get_extra_info(self, name: str) -> object:
        return (self.address, 40000) if name == "peername" else None

    def abort(self) -> None:
        self.aborted = True


class Clock:
    now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def lines(caplog: pytest.LogCaptureFixture) -> Callable[[], list[logging.LogRecord]]:
    """The gate's refusal lines logged so far."""
    caplog.set_level(logging.WARNING, logger="vrstack.service.connlimits")
    return lambda: [r for r in caplog.records if r.getMessage() == "connection refused"]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    c = Clock()
    monkeypatch.setattr(connlimits, "time", c)
    return c


def admit(gate: Gate, address: str) -> connlimits.Slot | None:
    t = Transport(address)
    slot = gate.admit(t)  # type: ignore[arg-type]
    assert t.aborted == (slot is None)
    return slot


def test_caps_per_source_and_in_total_and_released_places(clock: Clock) -> None:
    gate = Gate(ConnLimits(max_connections=5, max_connections_per_source=3), "t")
    a = [admit(gate, "198.18.0.1") for _ in range(4)]
    assert [s is not None for s in a] == [True, True, True, False]
    b = [admit(gate, "198.18.0.2") for _ in range(3)]
    assert [s is not None for s in b] == [True, True, False]  # the total (5) first
    assert (gate.open, gate.refused) == (5, 2)
    slot = a[0]
    assert slot is not None
    slot.release()
    slot.release()  # once only
    assert gate.open == 4 and gate.by_source == {"198.18.0.1": 2, "198.18.0.2": 2}
    assert admit(gate, "198.18.0.3") is not None
    for s in [*a, *b]:
        if s is not None:
            s.release()
    assert gate.by_source == {"198.18.0.3": 1}  # no empty entries left behind


def test_refusals_are_logged_once_per_source_per_interval_with_a_count(
    clock: Clock, lines: Callable[[], list[logging.LogRecord]]
) -> None:
    gate = Gate(ConnLimits(max_connections=10, max_connections_per_source=1), "t")
    admit(gate, "198.18.0.1")
    for _ in range(50):
        assert admit(gate, "198.18.0.1") is None
        clock.now += 0.1  # 5 s in all: within one interval
    said = lines()
    assert len(said) == 1
    first = said[0].__dict__
    assert (first["addr"], first["reason"], first["limit"], first["refused"]) == (
        "198.18.0.1",
        "max_connections_per_source",
        1,
        1,
    )
    clock.now += connlimits.LOG_INTERVAL
    admit(gate, "198.18.0.1")
    said = lines()
    assert len(said) == 2 and said[1].__dict__["refused"] == 50  # 49 unlogged + this one


def test_many_sources_make_a_bounded_number_of_lines(
    clock: Clock, lines: Callable[[], list[logging.LogRecord]]
) -> None:
    gate = Gate(ConnLimits(max_connections=1, max_connections_per_source=1), "t")
    admit(gate, "198.18.1.1")
    for i in range(200):
        admit(gate, f"198.18.2.{i}")
    assert len(lines()) == connlimits.LOG_BURST
    assert lines()[0].__dict__["reason"] == "max_connections"
    clock.now += connlimits.LOG_INTERVAL
    for i in range(200):
        admit(gate, f"198.18.3.{i}")
    assert len(lines()) == 2 * connlimits.LOG_BURST
    # The 20 said in the first interval are forgotten; the other 180 still hold a
    # refusal to say (20 said now, as the new interval began), and the 200 new ones.
    assert len(gate._recent) == 380


def refused_by_source(said: list[logging.LogRecord]) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in said:
        out[r.__dict__["addr"]] = out.get(r.__dict__["addr"], 0) + r.__dict__["refused"]
    return out


def test_refusals_past_the_burst_are_counted_and_said_later(
    clock: Clock, lines: Callable[[], list[logging.LogRecord]]
) -> None:
    """Sources refused while the burst is spent get no line then, but their refusals
    are said in later intervals: the lines' counts add up to the gate's, per source."""
    gate = Gate(ConnLimits(max_connections=1, max_connections_per_source=1), "t")
    admit(gate, "198.18.1.1")
    sources = [f"198.18.2.{i}" for i in range(30)]
    for _ in range(3):
        for address in sources:  # 90 refusals: 20 lines, then the burst is spent
            admit(gate, address)
    assert len(lines()) == connlimits.LOG_BURST
    for _ in range(3):  # each interval one refusal from elsewhere lets 20 more lines out
        clock.now += connlimits.LOG_INTERVAL
        admit(gate, "198.18.3.1")
    said = refused_by_source(lines())
    assert said == {**{a: 3 for a in sources}, "198.18.3.1": 3}
    assert sum(said.values()) == gate.refused == 93
    assert len(lines()) <= 4 * connlimits.LOG_BURST


def test_sources_beyond_the_tracked_ones_share_one_count(
    clock: Clock, lines: Callable[[], list[logging.LogRecord]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(connlimits, "MAX_TRACKED", 5)
    gate = Gate(ConnLimits(max_connections=1, max_connections_per_source=1), "t")
    admit(gate, "198.18.1.1")
    for i in range(12):
        admit(gate, f"198.18.2.{i}")
    assert len(gate._recent) == 5  # bounded
    said = refused_by_source(lines())
    assert said == {**{f"198.18.2.{i}": 1 for i in range(5)}, connlimits.OTHERS: 1}
    clock.now += connlimits.LOG_INTERVAL
    admit(gate, "198.18.2.0")  # the six unsaid are said with the next interval's first line
    said = refused_by_source(lines())
    assert said[connlimits.OTHERS] == 7 and said["198.18.2.0"] == 2
    assert sum(said.values()) == gate.refused == 13


def test_settings_are_read_and_checked(tmp_path: Path) -> None:
    def load(text: str) -> Settings:
        path = tmp_path / "svc.yaml"
        path.write_text(text)
        return Settings.load(path)

    default = ConnLimits(768, 8)
    assert connlimits.from_settings(load("{}"), "xmpp", default) == default
    got = connlimits.from_settings(load("http: {max_connections: 50}"), "http", default)
    assert got == ConnLimits(50, 8)
    with pytest.raises(ConfigError, match=r"svc\.yaml: http\.max_connections_per_source: "):
        connlimits.from_settings(load("http: {max_connections: 5}"), "http", default)
    with pytest.raises(ConfigError, match=r"xmpp\.max_connections: must be between 1 and"):
        connlimits.from_settings(load("xmpp: {max_connections: 0}"), "xmpp", default)


def test_a_quiet_source_s_unlogged_refusals_are_said_at_the_next_interval(
    clock: Clock, lines: Callable[[], list[logging.LogRecord]]
) -> None:
    gate = Gate(ConnLimits(max_connections=10, max_connections_per_source=1), "t")
    for address in ("198.18.0.1", "198.18.0.2"):
        admit(gate, address)
    for _ in range(5):
        admit(gate, "198.18.0.1")  # one line, four counted
    clock.now += connlimits.LOG_INTERVAL
    admit(gate, "198.18.0.2")  # the next interval: 198.18.0.1's four are said first
    said = [(r.__dict__["addr"], r.__dict__["refused"]) for r in lines()]
    assert said == [("198.18.0.1", 1), ("198.18.0.1", 4), ("198.18.0.2", 1)]
    clock.now += connlimits.LOG_INTERVAL
    admit(gate, "198.18.0.2")
    assert list(gate._recent) == ["198.18.0.2"]  # 198.18.0.1, quiet for an interval, forgotten


def test_an_allow_hook_refuses_other_sources_before_the_caps(
    clock: Clock, lines: Callable[[], list[logging.LogRecord]]
) -> None:
    gate = Gate(
        ConnLimits(max_connections=10, max_connections_per_source=2),
        "bgp",
        allow={"198.18.0.1"}.__contains__,
    )
    assert admit(gate, "198.18.0.9") is None
    assert [admit(gate, "198.18.0.1") is not None for _ in range(3)] == [True, True, False]
    assert (gate.open, gate.refused, gate.by_source) == (2, 2, {"198.18.0.1": 2})
    first, second = (r.__dict__ for r in lines())
    assert (first["listener"], first["addr"], first["reason"]) == (
        "bgp",
        "198.18.0.9",
        "not_allowed",
    )
    assert "limit" not in first  # no number to name: the source is not allowed at all
    assert (second["reason"], second["limit"]) == ("max_connections_per_source", 2)
