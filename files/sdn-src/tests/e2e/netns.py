"""Network namespace plumbing for the end-to-end test: commands, sockets and HTTP
inside a namespace, bounded waits, and processes that are always stopped.

The test process itself stays in its own namespace; a socket it needs inside another
one is created with `setns` on the calling thread only, then the thread switches back.
"""

from __future__ import annotations

import contextlib
import ctypes
import http.client
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)
T = TypeVar("T")


def sh(
    *args: str, check: bool = True, timeout: float = 20.0, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    if check and res.returncode:
        raise AssertionError(f"{' '.join(args)}: exit {res.returncode}: {res.stderr.strip()}")
    return res


def ip(ns: str, args: str) -> None:
    """`ip -n NS ARGS` (words split on blanks; none of our names has one)."""
    sh("ip", "-n", ns, *args.split())


def sysctl(ns: str, *settings: str) -> None:
    nsexec(ns, "sysctl", "-qw", *settings)


def nsexec(ns: str, *args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return sh("ip", "netns", "exec", ns, *args, **kw)


@contextlib.contextmanager
def entered(ns: str) -> Iterator[None]:
    """Run the block with this thread in namespace `ns` (sockets made there stay there)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{ns}", os.O_RDONLY)
    try:
        if _libc.setns(target, CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns {ns}")
        yield
    finally:
        _libc.setns(own, CLONE_NEWNET)
        os.close(own)
        os.close(target)


class _Conn(http.client.HTTPConnection):
    def __init__(self, ns: str, host: str, port: int, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self.ns = ns

    def connect(self) -> None:
        with entered(self.ns):
            self.sock = socket.create_connection((self.host, self.port), self.timeout)


def http_json(
    ns: str,
    host: str,
    port: int,
    path: str,
    method: str = "GET",
    body: Any = None,
    headers: dict[str, str] | None = None,
    timeout: float = 5.0,
) -> tuple[int, Any]:
    """One HTTP request to host:port inside `ns`; the status and the decoded JSON body."""
    conn = _Conn(ns, host, port, timeout)
    try:
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        conn.request(method, path, body=data, headers=hdrs)
        resp = conn.getresponse()
        raw = resp.read()
        return resp.status, (json.loads(raw) if raw else None)
    finally:
        conn.close()


def wait_for(check: Callable[[], T], timeout: float, what: str, every: float = 0.1) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = check()
        except (OSError, AssertionError, http.client.HTTPException) as exc:
            value, last = None, exc  # not there yet (a daemon still starting, ...)
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout}s: {what}" + (f" ({last})" if last else ""))
        time.sleep(every)


class Proc:
    """A process run inside a namespace, its output in a log file."""

    def __init__(self, name: str, ns: str, argv: list[str], log: Path, env: dict[str, str]):
        self.name, self.ns, self.argv, self.log, self.env = name, ns, argv, log, env
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Proc:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                ["ip", "netns", "exec", self.ns, *self.argv],
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.env,
            )
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int | None:
        """Signal the process and wait (SIGKILL after `timeout`); its exit status."""
        p, self.popen = self.popen, None
        if p is None:
            return None
        if p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        return p.returncode

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""
