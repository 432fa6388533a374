"""Fixtures for the config API tests: stores (SQLite, and etcd when installed), a running
API on loopback, and clients with the admin and read-only tokens."""

from __future__ import annotations

import itertools
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import pytest_asyncio
from hypothesis.configuration import set_hypothesis_home_dir

from vrstack.config.client import ConfigClient
from vrstack.config.store import Store
from vrstack.config.store_etcd import EtcdStore
from vrstack.config.store_sqlite import SQLiteStore
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, Etcd, running_api

_prefixes = itertools.count()

# Hypothesis caches under .hypothesis/ in the working directory, which is the repository
# (and would be packed into the collection): keep its files in the temp directory.
set_hypothesis_home_dir(str(Path(tempfile.gettempdir()) / "vrstack-hypothesis"))


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    if Etcd.binary() is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server): etcd backend untested")
    server = Etcd(tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()


def make_store(kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Store:
    if kind == "sqlite":
        return SQLiteStore(str(tmp_path / "config.db"))
    server: Etcd = request.getfixturevalue("etcd")
    # A fresh key prefix per test: tests share one etcd but never see each other's keys.
    return EtcdStore([server.url], prefix=f"/test{next(_prefixes)}/")


@pytest_asyncio.fixture(params=["sqlite", "etcd"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    s = make_store(request.param, tmp_path, request)
    await s.start()
    yield s
    await s.close()


@pytest_asyncio.fixture(params=["sqlite", "etcd"])
async def api_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    s = make_store(request.param, tmp_path, request)
    async with running_api(s, request.param) as url:
        yield url


@pytest_asyncio.fixture
async def sqlite_api_url(tmp_path: Path) -> AsyncIterator[str]:
    async with running_api(SQLiteStore(str(tmp_path / "config.db"))) as url:
        yield url


@pytest_asyncio.fixture
async def admin(api_url: str) -> AsyncIterator[ConfigClient]:
    async with ConfigClient(api_url, ADMIN_TOKEN) as c:
        yield c


@pytest_asyncio.fixture
async def reader(api_url: str) -> AsyncIterator[ConfigClient]:
    async with ConfigClient(api_url, READER_TOKEN) as c:
        yield c
