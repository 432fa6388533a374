"""What the agent sends to the analytics collector besides its status: flow records,
port records and route counts (docs/sdn-analytics.md, "What the agent sends").

Flow records are slices: each carries the bytes and packets of its flow over
[start, end] only (the delta since the flow's previous record), so summing a flow's
records gives its total. Counters come from the datapath's shared flow table, read
whole every `interval` (and at every ageing pass); a flow's last slice is sent when it
ends — aged out by the agent (with the counters read just before the delete), or gone
from the table otherwise (evicted, deleted by hand: with the counters last read).
At most `max_records` flow records per interval; past that a live flow's delta waits
for the next interval and an ended flow's last slice is lost, both counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from ..datapath.flowtable import FlowEntry
from .ports import Port

Emit = Callable[..., Any]  # Sender.emit(kind, **fields)

# The flow kind's actions; a trap entry is still waiting for the agent, like hold.
_ACTIONS = {"forward": "forward", "drop": "drop", "nat": "nat", "hold": "hold", "trap": "hold"}


@dataclass
class _Flow:
    """One flow being reported: its key, and what was seen and sent of its counters."""

    vrf: str
    src_ip: str
    dst_ip: str
    proto: int
    src_port: int
    dst_port: int
    action: str
    start: float  # where the next slice starts (wall clock)
    last: float = 0.0  # wall time of its last packet
    seen_bytes: int = 0
    seen_packets: int = 0
    sent_bytes: int = 0
    sent_packets: int = 0
    records: int = 0


def wall_time(last_ns: int, now: float, now_ns: int) -> float:
    """The datapath's monotonic packet time as seconds since the epoch."""
    return now - max(0, now_ns - last_ns) / 1e9


class FlowExport:
    def __init__(
        self,
        emit: Emit,
        vrf_name: Callable[[int], str],
        max_records: int = 1000,
        clock: Callable[[], float] = time.time,
        mono_ns: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.emit = emit
        self.vrf_name = vrf_name
        self.max_records = max_records
        self.clock = clock
        self.mono_ns = mono_ns
        self.flows: dict[tuple[int, int], _Flow] = {}  # (slot, generation) -> flow
        self._set_up: dict[int, float] = {}  # slots of flows set up since the last read
        self._budget = max_records
        self.counters = {"flow_records": 0, "flow_records_overflow": 0}

    def set_up(self, *indexes: int) -> None:
        """The agent just decided these flows: count them from their first packet."""
        now = self.clock()
        for i in indexes:
            self._set_up[i] = now

    def observe(self, entries: Iterable[FlowEntry]) -> None:
        """A whole read of the flow table: new flows tracked, counters updated; a flow
        no longer there has ended (its last slice is sent from what was last seen)."""
        now, now_ns = self.clock(), self.mono_ns()
        present = set()
        for e in entries:
            if e.action in ("hold", "trap"):
                continue  # not decided yet; its held packets are counted once released
            key = (e.index, e.gen)
            present.add(key)
            f = self.flows.get(key)
            if f is None:
                f = self._track(e, now)
            f.seen_bytes, f.seen_packets = e.bytes, e.packets
            f.action = _ACTIONS.get(e.action, "forward")
            if e.last_ns:
                f.last = wall_time(e.last_ns, now, now_ns)
        for key in [k for k in self.flows if k not in present]:
            self._slice(self.flows.pop(key), final=True, end=now)
        self._set_up.clear()

    def _track(self, e: FlowEntry, now: float) -> _Flow:
        started = self._set_up.get(e.index)
        f = _Flow(
            vrf=self.vrf_name(e.vrf),
            src_ip=str(e.sip),
            dst_ip=str(e.dip),
            proto=e.proto,
            src_port=e.sport,
            dst_port=e.dport,
            action=_ACTIONS.get(e.action, "forward"),
            start=started if started is not None else now,
        )
        if started is None:
            # There before this agent looked (it was restarted): what it carried then
            # was reported by the agent before, or is unknown; count from here.
            f.sent_bytes, f.sent_packets = e.bytes, e.packets
        self.flows[(e.index, e.gen)] = f
        return f

    def ended(self, e: FlowEntry) -> None:
        """The agent is about to delete this flow: its last slice, with these counters."""
        f = self.flows.pop((e.index, e.gen), None)
        if f is None:
            if e.action in ("hold", "trap"):
                return
            f = self._track(e, self.clock())
            del self.flows[(e.index, e.gen)]
        f.seen_bytes, f.seen_packets = e.bytes, e.packets
        now = self.clock()
        if e.last_ns:
            f.last = wall_time(e.last_ns, now, self.mono_ns())
        self._slice(f, final=True, end=f.last or now)

    def report(self) -> None:
        """Start a new interval: one slice per flow that carried traffic since its last."""
        self._budget = self.max_records
        # Biggest first, so an overflow leaves out the flows that matter least.
        for f in sorted(self.flows.values(), key=lambda f: f.sent_bytes - f.seen_bytes):
            self._slice(f, final=False, end=f.last or self.clock())

    def _slice(self, f: _Flow, final: bool, end: float) -> None:
        nbytes, npackets = f.seen_bytes - f.sent_bytes, f.seen_packets - f.sent_packets
        if npackets <= 0 and (f.records or f.sent_packets or not final):
            return  # nothing new (a flow set up that never carried a packet gets one)
        if self._budget <= 0:
            self.counters["flow_records_overflow"] += 1
            return  # a live flow's delta stays for the next slice
        self._budget -= 1
        end = max(end, f.start)
        self.emit(
            "flow",
            start=f.start,
            end=end,
            vrf=f.vrf,
            src_ip=f.src_ip,
            dst_ip=f.dst_ip,
            proto=f.proto,
            src_port=f.src_port,
            dst_port=f.dst_port,
            bytes=max(0, nbytes),
            packets=max(0, npackets),
            action=f.action,
        )
        self.counters["flow_records"] += 1
        f.sent_bytes, f.sent_packets = f.seen_bytes, f.seen_packets
        f.start = end
        f.records += 1


def port_record(port: Port, status: str) -> dict[str, Any] | None:
    """A `port` record's fields for a placed port (None without an instance or an
    address: the record needs both). The agent knows no VM name: `vm` is the port id."""
    ips = sorted(port.ips, key=lambda ip: ":" in ip)  # IPv4 first
    if not port.instance or not ips:
        return None
    return {
        "interface": port.tap or port.id,
        "vm": port.id,
        "network": port.instance.rsplit(":", 1)[0],
        "vrf": port.instance,
        "ip": ips[0],
        "mac": port.mac,
        "state": "up" if status == "up" else "down",
    }
