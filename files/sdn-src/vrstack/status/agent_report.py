"""The vrouter agent's status for the analytics collector (see report.py).

Wired in vrstack/agent/main.py with `report.add_reporting(app, analytics,
"vrstack-agent", lambda: agent_report.snapshot(agent))`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import report

if TYPE_CHECKING:
    from ..agent.agent import Agent

_STATES = {"Established": "up", "Connecting": "connecting"}


async def snapshot(agent: Agent) -> report.Snapshot:
    intro = agent.introspect()
    sessions = intro["sessions"]
    conns = [
        {"type": "control", "name": s["address"], "state": _STATES.get(s["state"], "down")}
        for s in sessions
    ]
    counters = {
        k: float(v)
        for k, v in intro["counters"].items()
        if isinstance(v, int | float) and not isinstance(v, bool)
    }
    counters["sessions_up"] = sum(1 for c in conns if c["state"] == "up")
    counters["session_flaps"] = sum(int(s.get("flaps", 0)) for s in sessions)
    present = agent.programmer is not None
    if not present:
        state, detail = "initializing", "datapath not connected"
    elif intro["headless"]:
        state, detail = "degraded", "no control node connection up (headless)"
    elif intro["counters"].get("dp_errors"):
        last = intro["counters"].get("datapath_last_error", "")
        state, detail = "degraded", f"datapath requests failed: {last}"
    else:
        state, detail = "up", ""
    return report.Snapshot(
        state, conns, counters, detail, datapath="present" if present else "absent"
    )
