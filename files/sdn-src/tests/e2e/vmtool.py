"""Runs inside a VM's network namespace (stdlib only, quick to start).

vmtool.py serve PORT...          TCP echo servers on every address, until killed
vmtool.py connect IP PORT SECS   one connection: send a line, expect it back; exit 0 if so
vmtool.py session IP PORT        one long-lived connection: each stdin line is sent and
                                 answered on stdout with "ok LINE" or "fail WHY"
vmtool.py bulk IP PORT BYTES SECS one connection: send BYTES random bytes, expect them echoed;
                                 prints "ok SECONDS" (exit 0) or "fail WHY"
vmtool.py offload IFNAME         turn TX checksum, scatter-gather, TSO and GSO on (as a
                                 virtio-net guest has them); print "txcsum=1 sg=1 tso=1 gso=1"
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import sys
import threading
import time

SIOCETHTOOL = 0x8946
# legacy ethtool get/set commands (no ethtool binary here): name -> (get, set)
OFFLOADS = {"txcsum": (0x16, 0x17), "sg": (0x18, 0x19), "tso": (0x1E, 0x1F), "gso": (0x23, 0x24)}


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


def _ethtool(ifname: str, cmd: int, data: int = 0) -> int:
    value = ctypes.create_string_buffer(struct.pack("II", cmd, data))
    ifreq = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(value))
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)
    return int(struct.unpack("II", value.raw[:8])[1])


def _bulk(ip: str, port: int, size: int, limit: float) -> float:
    data = os.urandom(size)
    got = bytearray()
    t0 = time.monotonic()
    with socket.create_connection((ip, port), timeout=limit) as s:
        # the echo comes back while we send: read it on a thread so neither side stalls
        def reader() -> None:
            while len(got) < size and (chunk := s.recv(1 << 20)):
                got.extend(chunk)

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        s.sendall(data)
        t.join(limit)
    if bytes(got) != data:
        raise ConnectionError(f"echoed {len(got)} bytes of {size}, equal: {bytes(got) == data}")
    return time.monotonic() - t0


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
    if cmd == "bulk":
        try:
            secs = _bulk(argv[1], int(argv[2]), int(argv[3]), float(argv[4]))
        except OSError as exc:
            print(f"fail {exc}")
            return 1
        print(f"ok {secs:.3f}")
        return 0
    if cmd == "offload":
        # The checksums and segmentation are left to the "NIC": the datapath finishes them.
        for _, put in OFFLOADS.values():
            _ethtool(argv[1], put, 1)
        print(" ".join(f"{k}={_ethtool(argv[1], get)}" for k, (get, _) in OFFLOADS.items()))
        return 0
    print(f"unknown command {cmd!r}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
