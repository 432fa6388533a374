"""`vrstack-api`: the config API daemon.

vrstack-api --config /etc/vrstack/api.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from ..service import httplimits
from ..service.daemon import add_reload, http_tls, serve
from ..service.jsonlog import setup_logging
from ..service.settings import ConfigError, Settings
from ..status import report
from . import auth
from .objects import ConfigDB
from .server import make_app
from .store import Store, StoreUnavailable
from .store_etcd import EtcdStore
from .store_sqlite import SQLiteStore


def store_from_settings(settings: Settings) -> tuple[Store, str]:
    backend = settings.get_choice("store.backend", ("sqlite", "etcd"), "sqlite")
    if backend == "sqlite":
        return SQLiteStore(settings.get_str("store.path")), backend
    endpoints = settings.get_list("store.endpoints")
    if not endpoints:
        raise settings.error("store.endpoints", "needs at least one etcd URL")
    for i, url in enumerate(endpoints):
        if not url.startswith(("http://", "https://")):
            raise settings.error(f"store.endpoints[{i}]", f"must be an http(s) URL, got {url!r}")
    return EtcdStore(endpoints, prefix=settings.get_str("store.prefix", "/vrstack/")), backend


async def snapshot(db: ConfigDB, backend: str) -> report.Snapshot:
    """The config API's status for the analytics collector: its store and revision."""
    try:
        revision = await db.store.revision()
    except Exception as exc:  # the store is away: report it rather than fail the report
        return report.Snapshot(
            "degraded", [report.connection("store", backend, False)], detail=f"store: {exc}"
        )
    return report.Snapshot(
        "up", [report.connection("store", backend, True)], {"revision": revision}
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vrstack-api", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML or INI config file")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args.config)
        setup_logging("vrstack-api", settings.get_str("log.level", "info"))
        store, backend = store_from_settings(settings)
        authenticator = auth.from_settings(settings)
        host = settings.get_str("listen.host", "127.0.0.1")
        port = settings.get_int("listen.port", 8082, low=0, high=65535)
        analytics = report.options(settings)
        http = httplimits.from_settings(settings)
        https = http_tls(settings)
    except ConfigError as exc:
        print(f"vrstack-api: config error: {exc}", file=sys.stderr)
        return 2
    db = ConfigDB(store)
    app = make_app(db, authenticator, backend, http)
    report.add_reporting(app, analytics, "vrstack-api", lambda: snapshot(db, backend))
    add_reload(app, settings.path, auth.reload_auth(authenticator))  # SIGHUP: tokens, Keystone user
    try:
        asyncio.run(serve(app, host, port, "vrstack-api", https))
    except StoreUnavailable as exc:
        print(f"vrstack-api: store: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        print(f"vrstack-api: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
