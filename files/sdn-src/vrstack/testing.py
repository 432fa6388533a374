"""Helpers for tests that run a userspace datapath (vrouterd): the agent's tests here and
the collection's module tests (tests/unit/plugins/modules) share them.

Everything lives in the directory the test gives; nothing listens on the network.
"""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

VROUTER_SRC = Path(__file__).resolve().parents[2] / "vrouter-src"  # files/vrouter-src


def build_vrouterd() -> Path:
    """The vrouterd binary, built from files/vrouter-src when it is out of date."""
    subprocess.run(["make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd"], check=True)
    return VROUTER_SRC / "build" / "vrouterd"


@contextlib.contextmanager
def vrouterds(binary: Path, workdir: Path, flows: int = 1024) -> Iterator[Callable[[str], Path]]:
    """A factory: start(NAME) runs a vrouterd in workdir/NAME and returns its control
    socket once it exists; every vrouterd started is stopped on the way out."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str) -> Path:
        d = workdir / name
        d.mkdir()
        sock = d / "control.sock"
        args = ["--control", str(sock), "--pkt0-dir", str(d)]
        args += ["--flow-file", str(d / "flows"), "--flows", str(flows)]
        with (d / "vrouterd.log").open("w") as log:
            procs.append(subprocess.Popen([str(binary), *args], stderr=log))
        for _attempt in range(250):  # 5 s
            if sock.exists():
                return sock
            time.sleep(0.02)
        raise AssertionError(f"vrouterd {name} did not start: see {d / 'vrouterd.log'}")

    try:
        yield start
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(timeout=5)
