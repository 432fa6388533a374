"""Runs inside a VM's network namespace (stdlib only): traffic of a known size.

flowvm.py plain IFNAME                     TX checksum, scatter-gather, TSO, GSO off: one
                                           frame on the wire per segment the VM sends
flowvm.py sink PORT SECS                   accept one TCP connection, read it to the end,
                                           print the byte count
flowvm.py send IP PORT SPORT BYTES SECS    from source port SPORT, send BYTES in 20 equal
                                           chunks spread over SECS, close; print "ok"
flowvm.py probe IP PORT SPORT SECS         try to connect; print "connected" or the error
"""

from __future__ import annotations

import ctypes
import fcntl
import socket
import struct
import sys
import time

SIOCETHTOOL = 0x8946
# ethtool's legacy set commands: TX checksum, scatter-gather, TSO, GSO
OFFLOAD_SETS = (0x17, 0x19, 0x1F, 0x24)
CHUNKS = 20


def plain(ifname: str) -> None:
    for cmd in OFFLOAD_SETS:
        value = ctypes.create_string_buffer(struct.pack("II", cmd, 0))
        ifreq = struct.pack("16sP16x", ifname.encode(), ctypes.addressof(value))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            fcntl.ioctl(s.fileno(), SIOCETHTOOL, ifreq)


def sink(port: int, limit: float) -> int:
    with socket.create_server(("0.0.0.0", port)) as srv:
        srv.settimeout(limit)
        print("listening", flush=True)
        conn, _ = srv.accept()
        total = 0
        with conn:
            conn.settimeout(limit)
            while data := conn.recv(65536):
                total += len(data)
    return total


def send(ip: str, port: int, sport: int, size: int, secs: float) -> None:
    chunk = size // CHUNKS
    with socket.create_connection((ip, port), timeout=10, source_address=("", sport)) as s:
        for i in range(CHUNKS):
            s.sendall(b"x" * (chunk if i < CHUNKS - 1 else size - chunk * (CHUNKS - 1)))
            time.sleep(secs / CHUNKS)
        s.shutdown(socket.SHUT_WR)
        s.settimeout(10)
        s.recv(1)  # the peer's close


def main(argv: list[str]) -> int:
    cmd = argv[0]
    if cmd == "plain":
        plain(argv[1])
    elif cmd == "sink":
        print(sink(int(argv[1]), float(argv[2])))
    elif cmd == "send":
        send(argv[1], int(argv[2]), int(argv[3]), int(argv[4]), float(argv[5]))
        print("ok")
    elif cmd == "probe":
        try:
            with socket.create_connection(
                (argv[1], int(argv[2])), timeout=float(argv[4]), source_address=("", int(argv[3]))
            ):
                print("connected")
        except OSError as exc:
            print(type(exc).__name__)
    else:
        print(f"unknown command {cmd!r}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
