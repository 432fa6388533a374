"""OpenStack integration tests: they need Neutron and os-vif, which only the venv of
`scripts/openstack-venv.sh` has; anywhere else (the dev venv's `make sdn-test`) the whole
directory is skipped with the reason. The Neutron-side tests share their ML2 scaffolding
through `neutronkit`."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

_MISSING = [m for m in ("neutron", "os_vif") if importlib.util.find_spec(m) is None]
if _MISSING:
    pytest.skip(
        f"{' and '.join(_MISSING)} not importable: run these with the venv of "
        "scripts/openstack-venv.sh",
        allow_module_level=True,
    )

from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, Daemon  # noqa: E402


def api_config(tmp: Path) -> dict[str, Any]:
    return {
        "listen": {"host": "127.0.0.1", "port": 0},
        "store": {"backend": "sqlite", "path": str(tmp / "config.db")},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
        "log": {"level": "info"},
    }


@pytest.fixture(scope="module")
def config_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    """A real `vrstack-api` process on a loopback port, one per test module."""
    tmp = tmp_path_factory.mktemp("api")
    api = Daemon("vrstack.config.main", api_config(tmp), tmp, "api")
    api.start()
    try:
        yield api
    finally:
        api.terminate()
