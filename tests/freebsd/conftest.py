"""Fixtures of the FreeBSD gate: the roles played once normally (files rendered into a
root directory per host) and once in check mode, side by side, for the example
FreeBSD inventory."""

from __future__ import annotations

import sys
from collections.abc import Iterator
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


@pytest.fixture(scope="session")
def played(
    tmp_path_factory: pytest.TempPathFactory, freebsd_hosts: list[str]
) -> Iterator[tuple[harness.Run, harness.Run]]:
    """(normal run, check-mode run), started together."""
    apply = harness.Play(INVENTORY, tmp_path_factory.mktemp("apply"), freebsd_hosts, check=False)
    check = harness.Play(INVENTORY, tmp_path_factory.mktemp("check"), freebsd_hosts, check=True)
    yield apply.wait(), check.wait()


@pytest.fixture(scope="session")
def applied(played: tuple[harness.Run, harness.Run]) -> harness.Run:
    return played[0]


@pytest.fixture(scope="session")
def checked(played: tuple[harness.Run, harness.Run]) -> harness.Run:
    return played[1]
