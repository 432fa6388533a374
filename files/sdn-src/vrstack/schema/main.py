"""`vrstack-schema`: the schema transformer daemon.

vrstack-schema --config /etc/vrstack/schema.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from aiohttp import web

from ..config.client import ConfigClient, new_api_token
from ..service import tls
from ..service.daemon import add_background, add_health, add_reload, serve
from ..service.jsonlog import setup_logging
from ..service.settings import ConfigError, Settings
from ..status import report
from .transformer import SchemaTransformer


async def snapshot(transformer: SchemaTransformer) -> report.Snapshot:
    """The transformer's status for the analytics collector."""
    health = transformer.health()
    if health["status"] == "ok":
        state = "up"
    else:  # not yet compiled once: still starting; compiled before: something broke
        state = "initializing" if transformer.last_ok is None else "degraded"
    return report.Snapshot(
        state=state,
        connections=[report.connection("config", transformer.client.url, health["connected"])],
        counters={
            "revision": health["revision"],
            "writes": health["writes"],
            "reconciles": health["reconciles"],
        },
        detail=health["last_error"] or "",
    )


def make_app(
    transformer: SchemaTransformer, analytics: report.Options | None = None
) -> web.Application:
    """The health endpoint, with the transformer running as a background task."""
    app = web.Application()

    async def health() -> dict[str, Any]:
        return transformer.health()

    async def run(stop: asyncio.Event) -> None:
        try:
            await transformer.run(stop)
        finally:
            await transformer.client.close()

    add_health(app, health)
    add_background(app, "schema-transformer", run)
    report.add_reporting(app, analytics, "vrstack-schema", lambda: snapshot(transformer))
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vrstack-schema", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML or INI config file")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args.config)
        setup_logging("vrstack-schema", settings.get_str("log.level", "info"))
        url = settings.get_str("api.url")
        if not url.startswith(("http://", "https://")):
            raise settings.error("api.url", f"must be an http(s) URL, got {url!r}")
        token = settings.get_str("api.token")
        api_ssl = tls.https_client(settings, "api.url", "api.tls")
        host = settings.get_str("listen.host", "127.0.0.1")
        port = settings.get_int("listen.port", 8087, low=0, high=65535)
        analytics = report.options(settings)
    except ConfigError as exc:
        print(f"vrstack-schema: config error: {exc}", file=sys.stderr)
        return 2
    client = ConfigClient(url, token, ssl_context=api_ssl)
    transformer = SchemaTransformer(client)
    app = make_app(transformer, analytics)
    add_reload(app, settings.path, new_api_token(client, "api.token"))  # SIGHUP: new token
    asyncio.run(serve(app, host, port, "vrstack-schema"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
