"""`vrstack-control`: the control node daemon.

vrstack-control --config /etc/vrstack/control.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from ..config.client import ConfigClient, Mirror, new_api_token
from ..service import connlimits, tls
from ..service.daemon import add_background, add_health, add_reload, serve
from ..service.jsonlog import setup_logging
from ..service.settings import ConfigError, Settings
from ..status import report
from . import tcp_md5
from .bgp import BGP_LIMITS
from .node import CONFIG_TYPES, XMPP_LIMITS, ControlNode, NodeSettings


async def snapshot(node: ControlNode) -> report.Snapshot:
    """The node's status for the analytics collector: config API, BGP peers, agents."""
    health = node.health()
    intro = node.introspect()
    conns = []
    if node.mirror is not None:
        conns.append(report.connection("config", node.mirror.client.url, node.mirror.connected))
    for peer in intro["bgp_peers"]:
        up = peer["state"] == "Established"
        conns.append(report.connection("bgp", f"{peer['name']} {peer['address']}", up, True))
    for agent in intro["agents"]:
        conns.append(report.connection("agent", agent["name"], agent["state"] == "established"))
    detail = "" if health["status"] == "ok" else f"bgp {health['bgp']}"
    if not health["config_connected"]:
        detail = "not connected to the config API"
    return report.Snapshot(
        state="up" if health["status"] == "ok" else "initializing",
        connections=conns,
        counters={
            "agents": len(intro["agents"]),
            "agents_refused": intro["agents_refused"],
            "bgp_established": health["bgp_established"],
            "bgp_peers": health["bgp_peers"],
            "config_revision": intro["config_revision"],
            "routes": sum(i["routes"] for i in intro["instances"].values()),
        },
        detail=detail,
    )


def make_app(node: ControlNode, analytics: report.Options | None = None) -> web.Application:
    """Health and introspect endpoints; the node's listeners and config feed in the background."""
    app = web.Application()

    async def health() -> dict[str, Any]:
        return node.health()

    async def introspect(_request: web.Request) -> web.Response:
        return web.json_response(node.introspect())

    async def routes(request: web.Request) -> web.Response:
        return web.json_response(node.routes(request.query.get("instance")))

    async def start(_app: web.Application) -> None:
        await node.start()  # before serving: a port in use stops the daemon at start

    async def stop(_app: web.Application) -> None:
        await node.stop()
        if node.mirror is not None:
            await node.mirror.client.close()

    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    add_health(app, health)
    app.router.add_get("/introspect", introspect)
    app.router.add_get("/introspect/routes", routes)
    add_background(app, "control-node-config", node.run)
    report.add_reporting(app, analytics, "vrstack-control", lambda: snapshot(node))
    return app


def bgp_gateways(settings: Settings) -> frozenset[str] | None:
    """`bgp.gateways`: the gateways' addresses this node peers with (absent: every one)."""
    raw = (settings.data.get("bgp") or {}).get("gateways")
    if raw is None:
        return None
    if not isinstance(raw, list):
        raise settings.error("bgp.gateways", "must be a list of gateway IPv4 addresses")
    out = set()
    for i, addr in enumerate(raw):
        try:
            out.add(str(ipaddress.IPv4Address(str(addr))))
        except ValueError:
            raise settings.error(f"bgp.gateways[{i}]", f"not an IPv4 address: {addr!r}") from None
    return frozenset(out)


def bgp_passwords(settings: Settings) -> tuple[str, dict[str, str]]:
    """`bgp.password` (control nodes) and `bgp.peer_passwords` ({address: password})."""
    password = settings.get_str("bgp.password", "")
    raw = (settings.data.get("bgp") or {}).get("peer_passwords") or {}
    if not isinstance(raw, dict):
        raise settings.error("bgp.peer_passwords", "must be a mapping of peer address to password")
    peers: dict[str, str] = {}
    for addr, value in raw.items():
        field = f"bgp.peer_passwords.{addr}"
        try:
            key = str(ipaddress.IPv4Address(str(addr)))
        except ValueError:
            raise settings.error(field, "the key must be a peer's IPv4 address") from None
        if not isinstance(value, str):
            raise settings.error(field, "must be a string")
        peers[key] = value
    checks = [("bgp.password", password)] if password else []
    checks += [(f"bgp.peer_passwords.{a}", p) for a, p in peers.items()]
    for field, value in checks:
        why = tcp_md5.check_password(value)
        if why:
            raise settings.error(field, why)  # the value itself is never shown
        if not tcp_md5.supported():  # Linux sets keys itself, FreeBSD has setkey(8)'s SAs
            raise settings.error(
                field, f"TCP MD5 is not supported on {sys.platform}; see docs/security.md"
            )
    return password, peers


def reload_crl(node: ControlNode) -> Callable[[Settings], None]:
    """SIGHUP: read the XMPP CRL again; agents connected stay, the next handshakes use it."""

    def apply(settings: Settings) -> None:
        if node.xmpp_tls is not None and not node.xmpp_tls.reload():
            raise settings.error("xmpp.tls.crl", "cannot be read; the last CRL stays")

    return apply


def load(settings: Settings) -> tuple[NodeSettings, str, str, str, int]:
    """Node settings, the API URL and token, and the HTTP listen address, all checked."""
    url = settings.get_str("api.url")
    if not url.startswith(("http://", "https://")):
        raise settings.error("api.url", f"must be an http(s) URL, got {url!r}")
    token = settings.get_str("api.token")
    ns = NodeSettings(
        name=settings.get_str("name", NodeSettings.name),
        asn=settings.get_int("bgp.asn", 0, low=0, high=4294967295),
        bgp_address=settings.get_str("bgp.address"),
        bgp_port=settings.get_int("bgp.port", 179, low=0, high=65535),
        connect_retry=settings.get_float("bgp.connect_retry", 5.0),
        bgp_limits=connlimits.from_settings(settings, "bgp", BGP_LIMITS),
        xmpp_host=settings.get_str("xmpp.host", "0.0.0.0"),
        xmpp_port=settings.get_int("xmpp.port", 5269, low=0, high=65535),
        xmpp_hold_time=settings.get_float("xmpp.hold_time", 90.0),
        xmpp_limits=connlimits.from_settings(settings, "xmpp", XMPP_LIMITS),
    )
    xmpp_tls = tls.server_files(settings, "xmpp.tls")
    if xmpp_tls is not None:
        ns.tls_cert, ns.tls_key, ns.tls_ca = xmpp_tls.cert, xmpp_tls.key, xmpp_tls.ca
        ns.tls_verify_client, ns.tls_crl = xmpp_tls.verify_peer, xmpp_tls.crl
    ns.bgp_password, ns.bgp_peer_passwords = bgp_passwords(settings)
    ns.bgp_gateways = bgp_gateways(settings)
    ns.router_id = settings.get_str("bgp.router_id", ns.bgp_address)
    for field, value in (("bgp.address", ns.bgp_address), ("bgp.router_id", ns.router_id)):
        try:
            ipaddress.IPv4Address(value)
        except ValueError:
            raise settings.error(field, f"must be an IPv4 address, got {value!r}") from None
    if ns.connect_retry <= 0 or ns.xmpp_hold_time <= 0:
        raise settings.error("bgp.connect_retry", "timers must be positive")
    host = settings.get_str("listen.host", "127.0.0.1")
    port = settings.get_int("listen.port", 8083, low=0, high=65535)
    return ns, url, token, host, port


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vrstack-control", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML or INI config file")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args.config)
        ns, url, token, host, port = load(settings)
        level = settings.get_choice("log.level", ("debug", "info", "warning", "error"), "info")
        analytics = report.options(settings)
        api_ssl = tls.https_client(settings, "api.url", "api.tls")
    except ConfigError as exc:
        print(f"vrstack-control: config error: {exc}", file=sys.stderr)
        return 2
    setup_logging("vrstack-control", level)
    client = ConfigClient(url, token, ssl_context=api_ssl)
    node = ControlNode(ns, Mirror(client, CONFIG_TYPES))
    app = make_app(node, analytics)
    # SIGHUP: the config API's new token, with the XMPP and BGP sessions kept.
    add_reload(app, settings.path, new_api_token(client, "api.token"))
    add_reload(app, settings.path, reload_crl(node))  # SIGHUP: the CRL, sessions kept
    try:
        asyncio.run(serve(app, host, port, "vrstack-control"))
    except OSError as exc:
        print(f"vrstack-control: cannot listen: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
