"""Helpers for tests of the config API and of the services that consume it.

Everything listens on 127.0.0.1 with ephemeral ports and lives in a temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import IO, Any

from aiohttp import web

from .auth import StaticTokens
from .objects import ConfigDB
from .server import make_app
from .store import Store

ADMIN_TOKEN = "admin-token-for-tests-0001"
READER_TOKEN = "reader-token-for-tests-0001"
AGENT_TOKEN = "agent-token-for-tests-0001"
SRC = Path(__file__).resolve().parent.parent.parent  # files/sdn-src


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextlib.asynccontextmanager
async def running_api(store: Store, backend: str = "sqlite", port: int = 0) -> AsyncIterator[str]:
    """An in-process API server on a loopback port (default ephemeral); yields its base URL."""
    app = make_app(ConfigDB(store), StaticTokens(ADMIN_TOKEN, READER_TOKEN, AGENT_TOKEN), backend)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port, reuse_address=True)
    await site.start()
    port = next(a[1] for a in runner.addresses if isinstance(a, tuple))
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


class Etcd:
    """A single-member etcd on loopback ports, data in `workdir`."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.client_port = free_port()
        self.peer_port = free_port()
        self.url = f"http://127.0.0.1:{self.client_port}"
        self.proc: subprocess.Popen[bytes] | None = None

    @staticmethod
    def binary() -> str | None:
        return shutil.which("etcd")

    def start(self, timeout: float = 30.0) -> None:
        exe = self.binary()
        assert exe, "etcd is not installed"
        peer = f"http://127.0.0.1:{self.peer_port}"
        log = open(self.workdir / "etcd.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                exe,
                "--name",
                "t",
                "--data-dir",
                str(self.workdir / "data"),
                "--listen-client-urls",
                self.url,
                "--advertise-client-urls",
                self.url,
                "--listen-peer-urls",
                peer,
                "--initial-advertise-peer-urls",
                peer,
                "--initial-cluster",
                f"t={peer}",
                "--listen-metrics-urls",
                "",
                "--auto-compaction-retention",
                "0",
            ],
            stdout=log,
            stderr=log,
            env={**os.environ, "ETCD_UNSUPPORTED_ARCH": "amd64"},
        )
        self._log = log
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"etcd exited: {(self.workdir / 'etcd.log').read_text()[-2000:]}"
                )
            try:
                req = urllib.request.Request(
                    self.url + "/v3/kv/range", data=b'{"key":"AA=="}', method="POST"
                )
                with urllib.request.urlopen(req, timeout=1) as resp:
                    if resp.status == 200:
                        return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("etcd did not answer within the timeout")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
            self._log.close()
            self.proc = None


class Daemon:
    """A vrstack daemon run as a real subprocess (`python -m <module> --config FILE`)."""

    def __init__(
        self, module: str, config: dict[str, Any], workdir: Path, name: str, profile: str = ""
    ) -> None:
        self.module = module
        self.profile = profile  # a file: run under cProfile, written at a clean exit
        self.config_path = workdir / f"{name}.yaml"
        self.config_path.write_text(json.dumps(config))  # JSON is valid YAML
        self.scheme = "https" if (config.get("http") or {}).get("tls") else "http"
        self.log_path = workdir / f"{name}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log: IO[bytes] | None = None
        self._offset = 0

    def start(self, timeout: float = 20.0) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in wait()
        self.port = 0
        self._offset = self.log_path.stat().st_size
        env = {**os.environ, "PYTHONPATH": str(SRC)}
        prof = ["-m", "cProfile", "-o", self.profile] if self.profile else []
        self.proc = subprocess.Popen(
            [sys.executable, *prof, "-m", self.module, "--config", str(self.config_path)],
            stdout=self._log,
            stderr=self._log,
            env=env,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in self.logs():
                if line.get("event") == "listening":
                    self.port = line["ports"][0]
            if self.port:
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.module} exited: {self.log_path.read_text()[-3000:]}")
            time.sleep(0.05)
        raise RuntimeError(f"{self.module} did not start: {self.log_path.read_text()[-3000:]}")

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def logs(self) -> Iterator[dict[str, Any]]:
        """The JSON log lines of the current run."""
        with open(self.log_path, "rb") as f:
            f.seek(self._offset)
            text = f.read().decode(errors="replace")
        for line in text.splitlines():
            with contextlib.suppress(json.JSONDecodeError):
                yield json.loads(line)

    def wait(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        rc = self.proc.wait(timeout)
        if self._log:
            self._log.close()
        return rc

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.terminate()
        return self.wait()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.wait()


async def wait_until(predicate: Any, timeout: float = 10.0, interval: float = 0.05) -> Any:
    """Poll an async predicate until it returns something truthy, bounded in time."""
    deadline = time.monotonic() + timeout
    while True:
        value = await predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(interval)


__all__ = [
    "ADMIN_TOKEN",
    "READER_TOKEN",
    "Daemon",
    "Etcd",
    "free_port",
    "running_api",
    "wait_until",
]
