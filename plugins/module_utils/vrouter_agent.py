# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Read a vrouter agent's introspect API (logic of the vrouter_agent_info module).

The agent (`vrstack-agent`, files/sdn-src/vrstack/agent/main.py) serves JSON on its
local listener: /introspect (sessions, config, counters), /introspect/interfaces,
/introspect/vrfs, /introspect/routes?instance=, /introspect/flows and
/introspect/datapath. `read()` asks for the parts wanted and shapes them into the
module's result; the HTTP part is one `get` callable, so the shaping is testable
against a real agent and timed by bench/agent_info.py.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from ansible_collections.vrstack.cloud.plugins.module_utils import api_client

# path with query -> parsed JSON; raises AgentError
Get = Callable[[str], Any]

SUBSETS = ("sessions", "config", "interfaces", "vrfs", "routes", "flows", "datapath")
DEFAULT_SUBSETS = ("sessions", "config", "interfaces", "vrfs", "datapath")


class AgentError(api_client.Failure):
    """The agent cannot be reached or refused a request."""


def open_url_getter(base_url: str, timeout: float = 10.0) -> Get:
    """A `get` over the modules' HTTP client (module_utils/api_client.py): the module, the benchmark."""

    def get(path: str) -> Any:
        url = base_url.rstrip("/") + path
        try:
            status, _hdrs, raw = api_client.request(url, timeout=timeout, validate_certs=False)
        except api_client.Unreachable as exc:
            raise AgentError(
                f"cannot reach the vrouter agent at {base_url}: {exc} "
                "(is vrstack-agent running? see `systemctl status vrstack-agent` and "
                "`journalctl -u vrstack-agent`)"
            ) from None
        if not 200 <= status < 300:
            text = raw.decode("utf-8", "replace")
            body = api_client.parsed(raw)
            error = body.get("error", text) if isinstance(body, dict) else text
            raise AgentError(f"GET {path}: {status}: {error}", status)
        try:
            return json.loads(raw)
        except ValueError:
            raise AgentError(f"GET {path}: the agent did not answer JSON") from None

    return get


def _sessions(intro: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        {
            "address": s["address"],
            "state": s["state"],
            "established": s["state"] == "Established",
            "flaps": s.get("flaps", 0),
            "established_at": s.get("established_at"),
            "last_error": s.get("last_error", ""),
            "config_revision": s.get("config_revision", 0),
            "tls": s.get("tls", False),
        }
        for s in intro.get("sessions", [])
    ]


def _config(intro: dict[str, Any]) -> dict[str, Any]:
    """Config sync: every established session has the newest revision the agent saw."""
    cfg = intro.get("config", {})
    rev = cfg.get("revision", 0)
    up = [s for s in intro.get("sessions", []) if s["state"] == "Established"]
    behind = [s["address"] for s in up if s.get("config_revision", 0) != rev]
    return {
        "revision": rev,
        "objects": cfg.get("objects", 0),
        "encap_priority": cfg.get("encap_priority", []),
        "synced": bool(up) and not behind and rev > 0,
        "sessions_behind": behind,
    }


def _interface(port: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": port["id"],
        "vm": port.get("vm"),  # when the vif plugin gave the agent the VM's id
        "network": port["network"],
        "instance": port["instance"],
        "ips": port.get("ips", []),
        "mac": port["mac"],
        "label": port.get("label"),  # None while it waits for its routing instance
        "vif": port.get("vif"),
        "vrf": port.get("vrf"),
        "tap": port.get("tap", ""),
        "state": port.get("state", "unknown"),
        "status": port.get("status", ""),  # up/down as reported to the config API
        "detail": port.get("detail", ""),  # why it is down
    }


def _route(route: dict[str, Any]) -> dict[str, Any]:
    hops = route.get("nexthops")
    if hops is None:  # a local port's address
        hops = [{"address": "local", "label": route.get("label", 0), "vni": 0, "encap": []}]
    return {"prefix": route["prefix"], "source": route["source"], "nexthops": hops}


def flow_query(vrf: int | None, ip: str, port: int | None, limit: int) -> str:
    query: dict[str, Any] = {"limit": limit}
    if vrf is not None:
        query["vrf"] = vrf
    if ip:
        query["ip"] = ip
    if port is not None:
        query["port"] = port
    return "/introspect/flows?" + urlencode(query)


def read(
    get: Get,
    subsets: list[str] | tuple[str, ...] = DEFAULT_SUBSETS,
    instances: list[str] | None = None,
    flow_vrf: str = "",
    flow_ip: str = "",
    flow_port: int | None = None,
    flow_limit: int = 1000,
) -> dict[str, Any]:
    """The agent's state as the module returns it.

    `instances`: routing instances whose routes to read (`all`: every local VRF).
    `flow_vrf`: a routing instance name or a VRF index."""
    unknown = sorted(set(subsets) - set(SUBSETS))
    if unknown:
        raise AgentError(f"gather: unknown subset {unknown[0]!r} (one of {', '.join(SUBSETS)})")
    want = set(subsets)
    if instances:
        want.add("routes")
    intro = get("/introspect")
    out: dict[str, Any] = {
        "name": intro.get("name", ""),
        "fabric_address": intro.get("fabric_address", ""),
        "headless": intro.get("headless", False),
        "counters": intro.get("counters", {}),
    }
    if "sessions" in want:
        out["sessions"] = _sessions(intro)
        out["sessions_established"] = sum(1 for s in out["sessions"] if s["established"])
    if "config" in want:
        out["config"] = _config(intro)
    if "interfaces" in want:
        out["interfaces"] = [_interface(p) for p in get("/introspect/interfaces")]
    vrfs: list[dict[str, Any]] | None = None
    if want & {"vrfs", "routes", "flows"}:
        vrfs = get("/introspect/vrfs")
    if "vrfs" in want:
        out["vrfs"] = vrfs
    if "routes" in want:
        names = [v["instance"] for v in vrfs or []]
        asked = names if not instances or "all" in instances else instances
        routes: dict[str, list[dict[str, Any]]] = {}
        for inst in asked:
            if inst not in names:
                have = ", ".join(names) or "none"
                raise AgentError(f"instances: {inst!r} has no local VRF on this agent ({have})")
            routes[inst] = [
                _route(r) for r in get("/introspect/routes?" + urlencode({"instance": inst}))
            ]
        out["routes"] = routes
    if "flows" in want:
        vrf_index: int | None = None
        if flow_vrf:
            by_name = {v["instance"]: v["vrf"] for v in vrfs or []}
            if flow_vrf.isdigit():
                vrf_index = int(flow_vrf)
            elif flow_vrf in by_name:
                vrf_index = by_name[flow_vrf]
            else:
                raise AgentError(
                    f"flow_vrf: {flow_vrf!r} is neither a VRF index nor a local instance"
                )
        out["flows"] = get(flow_query(vrf_index, flow_ip, flow_port, flow_limit))
    if "datapath" in want:
        out["datapath"] = get("/introspect/datapath")
    return out
