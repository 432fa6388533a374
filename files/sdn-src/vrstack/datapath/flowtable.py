"""Read the datapath's shared flow table (include/vr_defs.h) from its mapped
file, as the agent does to list and age flows without a message per flow.
Read-only: changes go through flow messages.  The file is the userspace
host's flow file or vrouter.ko's /dev/vrouter_flow."""

from __future__ import annotations

import ipaddress
import mmap
import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from vrstack.datapath import codec

MAGIC = 0x56524654
VERSION = 1
HDR = struct.Struct("=IIII48x")
# flags gen vrf rindex sip dip sport dport proto action src_vif packets bytes last_ns
# nat_sip nat_dip nat_sport nat_dport hold_count hash dvrf
ENTRY = struct.Struct("=IIII16s16s2s2sBBHQQQ16s16s2s2sIII")
NONE = 0xFFFFFFFF


class FlowTableError(Exception):
    pass


@dataclass(frozen=True)
class FlowEntry:
    index: int
    gen: int
    vrf: int
    sip: ipaddress.IPv4Address | ipaddress.IPv6Address
    dip: ipaddress.IPv4Address | ipaddress.IPv6Address
    proto: int
    sport: int
    dport: int
    action: str
    rindex: int | None
    packets: int
    bytes: int
    last_ns: int
    src_vif: int
    dvrf: int | None = None  # the VRF it is routed in after its action, if translated


def _addr(raw: bytes, v6: bool) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.IPv6Address(raw) if v6 else ipaddress.IPv4Address(raw[:4])


class FlowTable:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        with self.path.open("rb") as f:
            # vrouter.ko's /dev/vrouter_flow has no size: map what its header says.
            size = 0
            if stat.S_ISCHR(os.fstat(f.fileno()).st_mode):
                head = f.read(HDR.size)
                if len(head) == HDR.size:
                    size = HDR.size + HDR.unpack(head)[2] * ENTRY.size
            self._map = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
        if len(self._map) < HDR.size:
            raise FlowTableError(f"{self.path}: too short for a flow table header")
        magic, version, self.nentries, entry_size = HDR.unpack_from(self._map)
        if magic != MAGIC or version != VERSION or entry_size != ENTRY.size:
            raise FlowTableError(
                f"{self.path}: not a version {VERSION} flow table "
                f"(magic {magic:#x}, version {version}, entry size {entry_size})"
            )
        if HDR.size + self.nentries * ENTRY.size > len(self._map):
            raise FlowTableError(f"{self.path}: {self.nentries} entries do not fit the file")

    def close(self) -> None:
        self._map.close()

    def __enter__(self) -> FlowTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def entry(self, index: int) -> FlowEntry | None:
        """One slot, or None if it is free (or changed while being read)."""
        if not 0 <= index < self.nentries:
            raise IndexError(index)
        fields = ENTRY.unpack_from(self._map, HDR.size + index * ENTRY.size)
        flags, gen = fields[0], fields[1]
        if not flags & codec.FLOW_F_VALID:
            return None
        (_, _, vrf, rindex, sip, dip, sport, dport, proto, action, src_vif, pkts, nbytes,
         last_ns) = fields[:14]  # fmt: skip
        if struct.unpack_from("=I", self._map, HDR.size + index * ENTRY.size + 4)[0] != gen:
            return None  # the slot was reused under us
        v6 = bool(flags & codec.FLOW_F_IPV6)
        return FlowEntry(
            index=index,
            gen=gen,
            vrf=vrf,
            sip=_addr(sip, v6),
            dip=_addr(dip, v6),
            proto=proto,
            sport=int.from_bytes(sport, "big"),
            dport=int.from_bytes(dport, "big"),
            action=codec.FLOW_ACTIONS.get(action, str(action)),
            rindex=None if rindex == NONE else rindex,
            packets=pkts,
            bytes=nbytes,
            last_ns=last_ns,
            src_vif=src_vif,
            dvrf=fields[20] if flags & codec.FLOW_F_VRFT else None,
        )

    def entries(self) -> Iterator[FlowEntry]:
        for i in range(self.nentries):
            e = self.entry(i)
            if e is not None:
                yield e
