"""Fixtures of the FreeBSD gate: the roles played once normally (files rendered into a
root directory per host) and once in check mode, side by side, for the example
FreeBSD inventory."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import harness

INVENTORY = harness.REPO / "inventories" / "example-freebsd"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden",
        action="store_true",
        help="write tests/freebsd/golden/ from this run instead of comparing with it",
    )


@pytest.fixture(scope="session")
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


@pytest.fixture(scope="session")
def freebsd_hosts() -> list[str]:
    return harness.inventory_hosts(INVENTORY)


@pytest.fixture(scope="session", autouse=True)
def started(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[harness.Play, harness.Play] | None:
    """Both plays start with the session, when any selected test needs them, so the
    build and lint tests run while they do."""
    if not any("played" in item.fixturenames for item in request.session.items):
        return None
    hosts = harness.inventory_hosts(INVENTORY)
    return (
        harness.Play(INVENTORY, tmp_path_factory.mktemp("apply"), hosts, check=False),
        harness.Play(INVENTORY, tmp_path_factory.mktemp("check"), hosts, check=True),
    )


@pytest.fixture(scope="session")
def played(
    started: tuple[harness.Play, harness.Play] | None,
) -> tuple[harness.Run, harness.Run]:
    """(normal run, check-mode run)."""
    assert started is not None
    return started[0].wait(), started[1].wait()


@pytest.fixture(scope="session")
def applied(played: tuple[harness.Run, harness.Run]) -> harness.Run:
    return played[0]


@pytest.fixture(scope="session")
def checked(played: tuple[harness.Run, harness.Run]) -> harness.Run:
    return played[1]
