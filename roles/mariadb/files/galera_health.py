"""Galera health for haproxy (vrstack.cloud.mariadb): one HTTP answer per connection on
stdin/stdout (systemd socket with Accept=yes, or inetd on FreeBSD). 200 only when this
node is Synced in the Primary component and ready; 503 otherwise, also when MariaDB
does not answer in time (stopping, hung) or refuses the login."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from typing import BinaryIO

QUERY = (
    "SHOW GLOBAL STATUS WHERE Variable_name IN "
    "('wsrep_local_state', 'wsrep_cluster_status', 'wsrep_ready')"
)
SYNCED = "4"  # wsrep_local_state: 1 joining, 2 donor, 3 joined, 4 synced
MAX_REQUEST = 8192
RUNNING = ("active", "reloading")  # systemd states of a server that is not stopping


def decide(status: dict[str, str]) -> tuple[bool, str]:
    """Whether haproxy may send connections to a node reporting these wsrep values."""
    state = status.get("wsrep_local_state", "")
    cluster = status.get("wsrep_cluster_status", "")
    ready = status.get("wsrep_ready", "")
    if not status:
        return False, "no Galera status (MariaDB down, stopping or Galera off)"
    if cluster != "Primary":
        return False, f"cluster status {cluster or '?'} (not Primary)"
    if state != SYNCED:
        return False, f"local state {state or '?'} (not 4, Synced)"
    if ready.upper() != "ON":
        return False, f"wsrep_ready {ready or '?'}"
    return True, "Synced, Primary"


def parse(output: str) -> dict[str, str]:
    """`mysql --batch --skip-column-names` output: one `name<TAB>value` per line."""
    pairs = (line.split("\t", 1) for line in output.splitlines() if "\t" in line)
    return {name.strip().lower(): value.strip() for name, value in pairs}


def unit_state(unit: str, timeout: float) -> str:
    """systemd's view of MariaDB ("active", "deactivating", ...); "" when it cannot tell.

    A server being stopped still answers Synced for a while; systemd already says
    `deactivating`. No answer (no bus, no systemctl) leaves the decision to wsrep."""
    systemctl = shutil.which("systemctl")
    if not unit or systemctl is None:
        return ""
    try:
        done = subprocess.run(
            [systemctl, "is-active", unit],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return ""
    words = done.stdout.split()
    return words[0] if words else ""


def read_status(timeout: float) -> dict[str, str]:
    # Over the unix socket as this process's user (MariaDB's unix_socket login).
    argv = ["mysql", "--batch", "--skip-column-names", "--connect-timeout=1", "--execute", QUERY]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return parse(done.stdout) if done.returncode == 0 else {}


def check(unit: str, timeout: float) -> tuple[bool, str]:
    state = unit_state(unit, timeout)
    if state and state not in RUNNING:
        return False, f"{unit} is {state} (not active)"
    return decide(read_status(timeout))


def read_request(stream: BinaryIO) -> None:
    """Read the request head, so closing the connection does not reset it."""
    seen = 0
    while seen < MAX_REQUEST:
        line = stream.readline(MAX_REQUEST)
        seen += len(line)
        if line in (b"", b"\r\n", b"\n"):
            return


def response(ok: bool, reason: str) -> bytes:
    body = (reason + "\n").encode()
    status = "200 OK" if ok else "503 Service Unavailable"
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: text/plain\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--unit", default="", help="systemd unit of MariaDB (Linux)")
    parser.add_argument("--timeout", type=float, default=1.5, help="seconds per probe")
    args = parser.parse_args(argv)
    read_request(sys.stdin.buffer)
    ok, reason = check(args.unit, args.timeout)
    sys.stdout.buffer.write(response(ok, reason))
    sys.stdout.buffer.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
