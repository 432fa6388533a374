"""Runs inside a VM's network namespace (stdlib only, quick to start).

vmtool.py serve PORT...          TCP echo servers on every address, until killed
vmtool.py connect IP PORT SECS   one connection: send a line, expect it back; exit 0 if so
vmtool.py session IP PORT        one long-lived connection: each stdin line is sent and
                                 answered on stdout with "ok LINE" or "fail WHY"
vmtool.py nocsum IFNAME          turn transmit checksum offload off (no ethtool here)
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
import sys
import threading

SIOCETHTOOL, ETHTOOL_STXCSUM = 0x8946, 0x17


def _echo(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(120)
        try:
            while data := conn.recv(65536):
                conn.sendall(data)
        except OSError:
            pass


def _listen(port: int) -> None:
    srv = socket.create_server(("0.0.0.0", port), reuse_port=True)
    while True:
        conn, _ = srv.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _round_trip(s: socket.socket, line: bytes) -> None:
    s.sendall(line)
    got = b""
    while not got.endswith(b"\n"):
        chunk = s.recv(65536)
        if not chunk:
            raise ConnectionError("closed by the peer")
        got += chunk
    if got != line:
        raise ConnectionError(f"echo differs: {got!r}")


def main(argv: list[str]) -> int:
    cmd = argv[0]
    if cmd == "serve":
        for port in argv[1:]:
            threading.Thread(target=_listen, args=(int(port),), daemon=True).start()
        print("serving", flush=True)
        threading.Event().wait()
    if cmd == "connect":
        ip, port, limit = argv[1], int(argv[2]), float(argv[3])
        try:
            with socket.create_connection((ip, port), timeout=limit) as s:
                _round_trip(s, b"hello " * 100 + b"\n")
        except OSError as exc:
            print(f"fail {exc}")
            return 1
        print("ok")
        return 0
    if cmd == "session":
        s = socket.create_connection((argv[1], int(argv[2])), timeout=5)
        print("connected", flush=True)
        for line in sys.stdin:
            try:
                _round_trip(s, line.encode())
                print(f"ok {line.strip()}", flush=True)
            except OSError as exc:
                print(f"fail {exc}", flush=True)
        return 0
    if cmd == "nocsum":
        # A veth hands the datapath's packet socket TCP/UDP frames whose checksum is
        # left to "hardware" that is not there: the VM computes them itself instead.
        value = ctypes.create_string_buffer(struct.pack("II", ETHTOOL_STXCSUM, 0))
        ifreq = struct.pack("16sP16x", argv[1].encode(), ctypes.addressof(value))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
        return 0
    print(f"unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
