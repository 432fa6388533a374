"""`vrstack-collector`: the analytics collector and query API daemon.

vrstack-collector --config /etc/vrstack/collector.yaml
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from pathlib import Path

from ..config import auth
from ..service import httplimits, tls
from ..service.daemon import add_reload, http_tls, serve
from ..service.jsonlog import setup_logging
from ..service.settings import ConfigError, Settings
from . import access
from .overview import fabric_from_settings
from .records import KINDS
from .server import Limits, Options, make_app
from .store import AnalyticsStore, Retention, StoreError
from .store_sqlite import SQLiteStore

# Kept unless the config says otherwise: a day of flows, a week of the rest.
DEFAULT_RETENTION = {
    "flows": Retention(86_400, 10_000_000),
    "logs": Retention(7 * 86_400, 1_000_000),
    "status": Retention(7 * 86_400, 1_000_000),
    "ports": Retention(86_400, 1_000_000),
    "counters": Retention(7 * 86_400, 10_000_000),
}


SQLITE_KEYS = ("backend", "path", "synchronous", "query_timeout")
MARIADB_KEYS = (
    *("backend", "host", "port", "socket", "database", "user", "password", "password_file"),
    *("tls", "connect_timeout", "query_timeout"),
)
_DB_NAME = re.compile(r"[A-Za-z0-9_]{1,64}")


def store_from_settings(s: Settings) -> AnalyticsStore:
    """`store.backend`: sqlite (default, one analytics node) or mariadb (a database
    several collectors share; needs the `vrstack[mariadb]` extra, PyMySQL)."""
    backend = s.get_choice("store.backend", ("sqlite", "mariadb"), "sqlite")
    known = SQLITE_KEYS if backend == "sqlite" else MARIADB_KEYS
    section = s.data.get("store")
    for key in section if isinstance(section, dict) else ():
        if key not in known:
            raise s.error(f"store.{key}", f"is not a setting of the {backend} store")
    query_timeout = s.get_float("store.query_timeout", 10.0)
    if not 0.1 <= query_timeout <= 3600:
        raise s.error("store.query_timeout", "must be between 0.1 and 3600 seconds")
    if backend == "sqlite":
        return SQLiteStore(
            s.get_str("store.path"),
            s.get_choice("store.synchronous", ("full", "normal"), "full").upper(),
            query_timeout,
        )
    host, sock = s.get_str("store.host", ""), s.get_str("store.socket", "")
    if bool(host) == bool(sock):
        raise s.error("store.host", "give the server's host (and port) or a socket, not both")
    database = s.get_str("store.database")
    if not _DB_NAME.fullmatch(database):
        raise s.error("store.database", "must be 1-64 letters, digits or _")
    if s.get_str("store.password", "") and s.get_str("store.password_file", ""):
        raise s.error("store.password_file", "give store.password or store.password_file")
    password = s.get_str("store.password", "")
    if s.get_str("store.password_file", ""):
        path = s.get_str("store.password_file")
        try:
            password = Path(path).read_text().rstrip("\n")
        except OSError as exc:
            raise s.error("store.password_file", f"cannot read {path}: {exc.strerror}") from None
    files = tls.client_files(s, "store.tls")
    timeout = s.get_float("store.connect_timeout", 10.0)
    if not 0.1 <= timeout <= 600:
        raise s.error("store.connect_timeout", "must be between 0.1 and 600 seconds")
    server_kw = {
        "database": database,
        "user": s.get_str("store.user"),
        "password": password,
        "host": host,
        "port": s.get_int("store.port", 3306, low=1, high=65535),
        "socket": sock,
        "tls": tls.client_context(files) if files else None,
        "connect_timeout": timeout,
    }
    try:  # an optional extra: only a shared store needs it
        from .store_mariadb import MariaDBStore, Server
    except ImportError as exc:
        raise s.error(
            "store.backend", f"mariadb needs PyMySQL: install vrstack[mariadb] ({exc})"
        ) from None
    return MariaDBStore(Server(**server_kw), query_timeout)


def options_from_settings(s: Settings) -> Options:
    d = Limits()
    limits = Limits(
        max_batch_bytes=s.get_int(
            "limits.max_batch_bytes", d.max_batch_bytes, low=1024, high=2**30
        ),
        max_batch_records=s.get_int(
            "limits.max_batch_records", d.max_batch_records, low=1, high=10**6
        ),
        max_record_bytes=s.get_int(
            "limits.max_record_bytes", d.max_record_bytes, low=256, high=2**24
        ),
        source_rate=s.get_float("limits.source_rate", d.source_rate),
        source_burst=s.get_int("limits.source_burst", d.source_burst, low=1, high=10**9),
        source_inflight=s.get_int("limits.source_inflight", d.source_inflight, low=1, high=1000),
        max_pending=s.get_int("limits.max_pending", d.max_pending, low=1, high=10**9),
    )
    if limits.source_rate <= 0:
        raise s.error("limits.source_rate", "must be more than 0")
    if limits.source_burst < limits.max_batch_records:
        raise s.error("limits.source_burst", "must be at least limits.max_batch_records")
    retention = {}
    for kind in KINDS.values():
        t = kind.table
        base = DEFAULT_RETENTION[t]
        max_age = s.get_float(f"retention.{t}.max_age", base.max_age)
        if max_age < 0:
            raise s.error(f"retention.{t}.max_age", "must be 0 (keep) or a number of seconds")
        max_rows = s.get_int(f"retention.{t}.max_rows", base.max_rows, low=0, high=2**62)
        retention[t] = Retention(max_age, max_rows)
    for name in s.data.get("retention") or {}:
        if name not in ("interval", "batch", *DEFAULT_RETENTION):
            raise s.error(
                f"retention.{name}",
                f"unknown; one of interval, batch, {', '.join(DEFAULT_RETENTION)}",
            )
    interval = s.get_float("retention.interval", 60.0)
    alarm_interval = s.get_float("alarms.check_interval", 5.0)
    for name, value in (
        ("page.window", s.get_float("page.window", 600.0)),
        ("retention.interval", interval),
        ("alarms.check_interval", alarm_interval),
    ):
        if not 0.05 <= value <= 86_400:
            raise s.error(name, "must be between 0.05 and 86400 seconds")
    return Options(
        limits=limits,
        retention=retention,
        retention_interval=interval,
        retention_batch=s.get_int("retention.batch", 10_000, low=1, high=10**7),
        missed_intervals=s.get_int("alarms.missed_intervals", 3, low=1, high=1000),
        alarm_interval=alarm_interval,
        fabric=fabric_from_settings(s),
        page_window=s.get_float("page.window", 600.0),
        project_vrfs=access.from_settings(s),
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vrstack-collector", description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="YAML or INI config file")
    args = parser.parse_args(argv)
    try:
        settings = Settings.load(args.config)
        setup_logging("vrstack-collector", settings.get_str("log.level", "info"))
        store = store_from_settings(settings)
        authenticator = auth.from_settings(settings)
        options = options_from_settings(settings)
        http = httplimits.from_settings(settings)
        host = settings.get_str("listen.host", "127.0.0.1")
        port = settings.get_int("listen.port", 8081, low=0, high=65535)
        https = http_tls(settings)
    except ConfigError as exc:
        print(f"vrstack-collector: config error: {exc}", file=sys.stderr)
        return 2
    app = make_app(store, authenticator, options, http)
    add_reload(app, settings.path, auth.reload_auth(authenticator))  # SIGHUP: tokens, Keystone user
    try:
        asyncio.run(serve(app, host, port, "vrstack-collector", https))
    except StoreError as exc:
        print(f"vrstack-collector: store: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:  # e.g. the port is taken
        print(f"vrstack-collector: cannot listen on {host}:{port}: {exc.strerror}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
