"""Fixtures for the agent tests: vrouterd processes and the control test cluster."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

# The control node tests' cluster helpers (config API + schema transformer + nodes).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "control"))
from controlkit import Cluster, running_cluster

from vrstack.testing import vrouterds

VROUTER_SRC = Path(__file__).resolve().parents[3] / "vrouter-src"
VROUTERD = VROUTER_SRC / "build" / "vrouterd"


@pytest.fixture(scope="session")
def vrouterd_binary() -> Path:
    subprocess.run(["make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd"], check=True)
    return VROUTERD


@pytest.fixture
def vrouterd(vrouterd_binary: Path, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A factory: start a vrouterd named NAME, return its control socket; all stopped after."""
    with vrouterds(vrouterd_binary, tmp_path) as start:
        yield start


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(str(tmp_path / "config.db")) as c:
        yield c
