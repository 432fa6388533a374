"""Fixtures for the schema transformer tests: an etcd for the etcd-backed runs."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from vrstack.config.testing import Etcd


@pytest.fixture(scope="session")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Etcd]:
    if Etcd.binary() is None:
        pytest.skip("etcd is not installed (apt-get install etcd-server): etcd backend untested")
    server = Etcd(tmp_path_factory.mktemp("etcd"))
    server.start()
    yield server
    server.stop()
