"""`vrstack-agent`: the vrouter agent daemon.

vrstack-agent --config /etc/vrstack/agent.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import re
import sys
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..config.client import new_api_token
from ..service import httplimits, tls
from ..service.daemon import add_background, add_health, add_reload
from ..service.jsonlog import setup_logging
from ..service.settings import ConfigError, Settings
from ..status import agent_report, report
from . import introspect
from .agent import Agent, AgentSettings
from .ports import Port, PortError
from .program import Fabric

_MAC = re.compile(r"^[0-9a-fA-F]{2}(:[0-9a-fA-F]{2}){5}$")


@dataclass
class FlowOptions:
    """The agent's own keys of the `analytics` section (the rest is report.Options)."""

    interval: float = 30.0  # seconds between flow records of a long-lived flow
    max_records: int = 1000  # flow records per interval at most


def make_app(
    agent: Agent, analytics: report.Options | None = None, flow_opts: FlowOptions | None = None
) -> web.Application:
    """Health, introspect and the port API (POST/DELETE /ports) on one local listener."""
    app = web.Application()

    async def health() -> dict[str, Any]:
        up = sum(s.up for s in agent.sessions)
        prog = agent.programmer
        ok = up > 0 and prog is not None and not prog.counters["dp_errors"]
        return {"status": "ok" if ok else "degraded", "sessions_up": up}

    async def introspect(_r: web.Request) -> web.Response:
        return web.json_response(agent.introspect())

    async def interfaces(_r: web.Request) -> web.Response:
        return web.json_response(agent.interfaces())

    async def vrfs(_r: web.Request) -> web.Response:
        return web.json_response(agent.vrf_list())

    async def routes(r: web.Request) -> web.Response:
        inst = r.query.get("instance", "")
        got = agent.routes_json(inst)
        if got is None:
            return web.json_response({"error": f"instance: no local VRF {inst!r}"}, status=404)
        return web.Response(body=got, content_type="application/json")

    async def flows(r: web.Request) -> web.Response:
        args: dict[str, Any] = {}
        for key in ("limit", "vrf", "port"):
            if key in r.query:
                try:
                    args[key] = int(r.query[key])
                except ValueError:
                    return web.json_response({"error": f"{key}: must be an integer"}, status=400)
        if r.query.get("ip"):
            try:
                args["ip"] = str(ipaddress.ip_address(r.query["ip"]))
            except ValueError:
                return web.json_response({"error": "ip: not an IP address"}, status=400)
        return web.json_response(agent.flows(**args))

    async def datapath(_r: web.Request) -> web.Response:
        return web.json_response(agent.datapath_view())

    async def list_ports(_r: web.Request) -> web.Response:
        return web.json_response([p.to_dict() for p in agent.ports.ports.values()])

    async def add_port(r: web.Request) -> web.Response:
        try:
            port = Port.from_dict(json.loads(await r.read() or b"null"))
            agent.add_port(port)
        except (PortError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(port.to_dict(), status=201)

    async def delete_port(r: web.Request) -> web.Response:
        if not agent.delete_port(r.match_info["id"]):
            return web.json_response({"error": f"id: no port {r.match_info['id']!r}"}, status=404)
        return web.json_response({"deleted": r.match_info["id"]})

    async def start(_app: web.Application) -> None:
        agent.open_datapath()  # before serving: no datapath stops the daemon at start

    app.on_startup.append(start)
    add_health(app, health)
    app.router.add_get("/introspect", introspect)
    app.router.add_get("/introspect/interfaces", interfaces)
    app.router.add_get("/introspect/vrfs", vrfs)
    app.router.add_get("/introspect/routes", routes)
    app.router.add_get("/introspect/flows", flows)
    app.router.add_get("/introspect/datapath", datapath)
    app.router.add_get("/ports", list_ports)
    app.router.add_post("/ports", add_port)
    app.router.add_delete("/ports/{id}", delete_port)

    async def snapshot() -> report.Snapshot:
        snap = await agent_report.snapshot(agent)
        agent.report_analytics()  # ports and route counts go with every status
        return snap

    reporter = report.add_reporting(app, analytics, "vrstack-agent", snapshot)
    if reporter is not None:
        opts = flow_opts or FlowOptions()
        agent.attach_analytics(reporter.sender.emit, opts.interval, opts.max_records)
    add_background(app, "agent", agent.run)
    return app


def flow_options(settings: Settings) -> FlowOptions:
    interval = settings.get_float("analytics.flow_interval", 30.0)
    if not 1 <= interval <= 3600:
        raise settings.error(
            "analytics.flow_interval", f"must be 1 to 3600 seconds, got {interval}"
        )
    limit = settings.get_int("analytics.max_flow_records", 1000, low=1, high=100_000)
    return FlowOptions(interval, limit)


def _address(settings: Settings, field: str, value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise settings.error(field, f"must be an IPv4 address, got {value!r}") from None


def load(settings: Settings) -> tuple[AgentSettings, str, int]:
    """Agent settings and the HTTP listen address, every field checked (the listener's
    TLS files too: `introspect.listener` reads them)."""
    controls = []
    items = settings.get_list("controls")
    if not 1 <= len(items) <= 2:
        raise settings.error("controls", "give one or two control nodes as host:port")
    for i, item in enumerate(items):
        host, _, port = item.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise settings.error(f"controls[{i}]", f"must be host:port, got {item!r}")
        controls.append((host, int(port)))
    fabric = Fabric(
        address=_address(settings, "fabric.address", settings.get_str("fabric.address"))
    )
    for key in ("mac", "gateway_mac"):
        mac = settings.get_str(f"fabric.{key}", getattr(fabric, key))
        if not _MAC.match(mac):
            raise settings.error(f"fabric.{key}", f"must be a MAC address, got {mac!r}")
        setattr(fabric, key, mac.lower())
    fabric.interface = settings.get_str("fabric.interface", "")
    if len(fabric.interface.encode()) > 15:
        raise settings.error("fabric.interface", "at most 15 bytes")
    low = settings.get_int("labels.start", 16, low=16, high=1048575)
    high = settings.get_int("labels.end", 1048575, low=16, high=1048575)
    if low > high:
        raise settings.error("labels", f"start {low} is after end {high}")
    agent = AgentSettings(
        name=settings.get_str("name"),
        fabric=fabric,
        controls=controls,
        datapath_socket=settings.get_str("datapath.socket", "/run/vrouter/control.sock"),
        port_file=settings.get_str("ports_file", "/var/lib/vrstack/ports.json"),
        pkt0_dir=settings.get_str("datapath.pkt0_dir", ""),
        flow_file=settings.get_str("datapath.flow_file", ""),
        flow_idle=settings.get_float("flow_idle", 60.0),
        label_range=(low, high),
        max_vifs=settings.get_int("datapath.max_vifs", 256, low=4, high=65536),
        ping_interval=settings.get_float("ping_interval", 10.0),
        retry=settings.get_float("retry", 1.0),
        xmpp_tls=tls.client_files(settings, "xmpp.tls"),
        xmpp_server_name=settings.get_str("xmpp.tls.server_name", ""),
        vif_ports_dir=settings.get_str("vif_ports_dir", ""),
        config_api_url=settings.get_str("config_api.url", ""),
        config_api_token=settings.get_str("config_api.token", ""),
        config_api_ssl=tls.https_client(settings, "config_api.url", "config_api.tls"),
        tap_poll=settings.get_float("tap_poll", 2.0),
    )
    if agent.ping_interval <= 0 or agent.retry <= 0 or agent.flow_idle <= 0:
        raise settings.error("ping_interval", "timers must be positive")
    if not 0.1 <= agent.tap_poll <= 60:
        raise settings.error("tap_poll", "must be between 0.1 and 60 seconds")
    if agent.config_api_url:
        if not agent.config_api_url.startswith(("http://", "https://")):
            raise settings.error("config_api.url", "must be an http:// or https:// URL")
        if not agent.config_api_token:
            raise settings.error("config_api.token", "is required with config_api.url")
    where = introspect.listener(settings)
    return agent, where.host, where.port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vrstack-agent", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML or INI config file")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args.config)
        agent_settings = load(settings)[0]
        where = introspect.listener(settings)
        level = settings.get_choice("log.level", ("debug", "info", "warning", "error"), "info")
        analytics = report.options(settings)
        flows = flow_options(settings)
        http = httplimits.from_settings(settings)
        agent = Agent(agent_settings)
    except (ConfigError, PortError) as exc:
        print(f"vrstack-agent: config error: {exc}", file=sys.stderr)
        return 2
    setup_logging("vrstack-agent", level)
    app = make_app(agent, analytics, flows)
    httplimits.install(app, http)
    if agent.status is not None:  # SIGHUP: the new agent token; XMPP sessions are kept
        add_reload(app, settings.path, new_api_token(agent.status.client, "config_api.token"))
    try:
        asyncio.run(introspect.serve(app, where, "vrstack-agent"))
    except OSError as exc:
        print(f"vrstack-agent: cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
