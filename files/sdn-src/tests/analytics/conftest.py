"""The collector tests import their helpers from collectorkit.py next to this file.

`make_store` runs a test on each store: SQLite in the test's directory, and MariaDB in a
fresh database of one private `mariadbd` started for the session (mariadbkit.py). A
missing MariaDB fails those tests (never skips them): `make bootstrap` installs it."""

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from mariadbkit import MariaDB, store

from vrstack.analytics.store import AnalyticsStore
from vrstack.analytics.store_sqlite import SQLiteStore

StoreFactory = Callable[[], AnalyticsStore]


@pytest.fixture(scope="session")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MariaDB]:
    server = MariaDB(tmp_path_factory.mktemp("mariadb"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(params=["sqlite", "mariadb"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> StoreFactory:
    """Makes store objects over one place (a second call: the same data, as after a
    restart)."""
    if request.param == "sqlite":
        return lambda: SQLiteStore(str(tmp_path / "analytics.db"))
    server = request.getfixturevalue("mariadb").new_database()
    return lambda: store(server)
