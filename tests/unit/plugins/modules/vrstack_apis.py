"""The vrstack APIs the module tests run against: real daemons on 127.0.0.1 with the
test tokens of vrstack.config.testing, their files in a directory of the test's."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

SDN_SRC = Path(__file__).resolve().parents[4] / "files" / "sdn-src"
sys.path.insert(0, str(SDN_SRC))
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, Daemon  # noqa: E402


@contextlib.contextmanager
def running(module: str, work: Path, port: int = 0, **settings: Any) -> Iterator[Daemon]:
    """`python -m MODULE` with static tokens, listening on `port` (0: any); it must exit
    cleanly when stopped."""
    config = {
        "listen": {"host": "127.0.0.1", "port": port},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
        **settings,
    }
    daemon = Daemon(module, config, work, module.split(".")[1])
    daemon.start()
    try:
        yield daemon
    finally:
        assert daemon.terminate() == 0


def config_api(work: Path, port: int = 0) -> contextlib.AbstractContextManager[Daemon]:
    """vrstack-api over SQLite."""
    store = {"backend": "sqlite", "path": str(work / "config.db")}
    return running("vrstack.config.main", work, port, store=store)


def collector(work: Path) -> contextlib.AbstractContextManager[Daemon]:
    """vrstack-collector over SQLite."""
    return running("vrstack.analytics.main", work, store={"path": str(work / "analytics.db")})
