"""Fixtures for the datapath tests: a running vrouterd on a private socket."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

VROUTER_SRC = Path(__file__).resolve().parents[3] / "vrouter-src"
VROUTERD = VROUTER_SRC / "build" / "vrouterd"


def build_vrouterd() -> Path:
    subprocess.run(["make", "-s", "-C", str(VROUTER_SRC), "build/vrouterd"], check=True)
    return VROUTERD


@pytest.fixture
def vrouterd(tmp_path: Path) -> Iterator[Path]:
    """Start vrouterd; yield its control socket path; stop it."""
    binary = build_vrouterd()
    sock = tmp_path / "control.sock"
    log = (tmp_path / "vrouterd.log").open("w")
    args = ["--control", str(sock), "--pkt0-dir", str(tmp_path)]
    args += ["--flow-file", str(tmp_path / "flows"), "--flows", "1024"]
    proc = subprocess.Popen([str(binary), *args], stderr=log)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.02)
        assert sock.exists(), "vrouterd did not start"
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=5)
        log.close()
