"""Run inside a VM's network namespace: send one frame on an interface, print the first
frame that comes back with the wanted ethertype (hex), within a time limit."""

from __future__ import annotations

import socket
import sys
import time


def main() -> int:
    ifname, frame_hex, ethertype = sys.argv[1], sys.argv[2], int(sys.argv[3], 16)
    limit = float(sys.argv[4]) if len(sys.argv) > 4 else 5.0
    s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
    s.bind((ifname, 0))
    s.settimeout(0.2)
    s.send(bytes.fromhex(frame_hex))
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        try:
            data, addr = s.recvfrom(65536)
        except TimeoutError:
            continue
        if addr[2] == socket.PACKET_OUTGOING:
            continue
        if int.from_bytes(data[12:14], "big") == ethertype:
            print(data.hex())
            return 0
    print("timeout", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
