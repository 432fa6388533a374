"""Fixtures for the agent tests: vrouterd processes and the control test cluster."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
import pytest_asyncio

# The control node tests' cluster helpers (config API + schema transformer + nodes).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "control"))
from controlkit import Cluster, running_cluster

VROUTER_SRC = Path(__file__).resolve().parents[3] / "vrouter-src"
VROUTERD = VROUTER_SRC / "build" / "vrouterd"


@pytest.fixture(scope="session")
def vrouterd_binary() -> Path:
    subprocess.run(["make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd"], check=True)
    return VROUTERD


@pytest.fixture
def vrouterd(vrouterd_binary: Path, tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    """A factory: start a vrouterd named NAME, return its control socket; all stopped after."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> Path:
        d = tmp_path / name
        d.mkdir()
        sock = d / "control.sock"
        args = ["--control", str(sock), "--pkt0-dir", str(d)]
        args += ["--flow-file", str(d / "flows"), "--flows", "1024"]
        with (d / "vrouterd.log").open("w") as log:
            procs.append(subprocess.Popen([str(vrouterd_binary), *args], stderr=log))
        for _ in range(250):
            if sock.exists():
                return sock
            time.sleep(0.02)
        raise AssertionError(f"vrouterd {name} did not start")

    try:
        yield start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=5)


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with running_cluster(str(tmp_path / "config.db")) as c:
        yield c
