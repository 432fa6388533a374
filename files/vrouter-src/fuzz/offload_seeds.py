"""Seed inputs for fuzz_offload: valid TCP/UDP GSO frames and a partial checksum,
each as fuzz_offload reads it (virtio fields, MTU, then the frame).

    python fuzz/offload_seeds.py DIR
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

ETH = bytes.fromhex("020000000002020000000001")


def ipv4(proto: int, l4: bytes) -> bytes:
    hdr = struct.pack(
        "!BBHHHBBH4s4s",
        0x45,
        0,
        20 + len(l4),
        1,
        0x4000,
        64,
        proto,
        0,
        bytes([198, 18, 10, 11]),
        bytes([198, 18, 10, 12]),
    )
    return ETH + b"\x08\x00" + hdr + l4


def ipv6(proto: int, l4: bytes) -> bytes:
    hdr = struct.pack(
        "!IHBB16s16s",
        6 << 28,
        len(l4),
        proto,
        64,
        b"\x20\x01" + b"\0" * 13 + b"\1",
        b"\x20\x01" + b"\0" * 13 + b"\2",
    )
    return ETH + b"\x86\xdd" + hdr + l4


def tcp(payload: bytes) -> bytes:
    return struct.pack("!HHIIBBHHH", 40000, 8080, 1, 1, 0x50, 0x99, 502, 0, 0) + payload


def udp(payload: bytes) -> bytes:
    return struct.pack("!HHHH", 40000, 8080, 8 + len(payload), 0) + payload


def seed(flags: int, gso: int, size: int, start: int, offset: int, mtu: int, f: bytes) -> bytes:
    return struct.pack("!BBHHHH", flags, gso, size, start, offset, mtu) + f


def main(out: Path) -> None:
    data = bytes(range(256)) * 16
    seeds = {
        "tcp4": seed(1, 1, 1448, 34, 16, 1500, ipv4(6, tcp(data))),
        "tcp6": seed(1, 4, 1428, 54, 16, 1450, ipv6(6, tcp(data))),
        "udp4": seed(1, 5, 1000, 34, 6, 0, ipv4(17, udp(data))),
        "csum": seed(1, 0, 0, 34, 16, 0, ipv4(6, tcp(data[:100]))),
    }
    out.mkdir(parents=True, exist_ok=True)
    for name, blob in seeds.items():
        (out / f"{name}.bin").write_bytes(blob)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
