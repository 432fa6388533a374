"""The generic netlink transport's framing (the kernel side is exercised by
files/vrouter-src/tests/kernel in a real kernel)."""

from __future__ import annotations

import pytest

from vrstack.datapath import codec, genl
from vrstack.datapath.client import NETLINK, DatapathClient, connect


@pytest.mark.parametrize("size", [0, 1, 3, 4, 5, 100, 65531])
def test_attr_round_trip(size: int) -> None:
    value = bytes(range(256)) * (size // 256) + bytes(range(size % 256))
    raw = genl._attr(genl.ATTR_MSG, value) + genl._attr(7, b"xy")
    assert len(raw) % 4 == 0
    assert genl.attrs(raw) == {genl.ATTR_MSG: value, 7: b"xy"}


def test_attr_too_long_is_refused() -> None:
    with pytest.raises(codec.CodecError):
        genl._attr(genl.ATTR_MSG, b"\0" * 65532)


@pytest.mark.parametrize(
    "raw",
    [b"\x03\x00\x01\x00", b"\x10\x00\x01\x00abcd", b"\x08\x00\x01\x00ab"],
)
def test_malformed_attributes_are_refused(raw: bytes) -> None:
    with pytest.raises(genl.NetlinkError):
        genl.attrs(raw)


def test_connect_picks_the_transport(tmp_path: object) -> None:
    with pytest.raises(OSError):
        connect(str(tmp_path) + "/missing.sock")
    assert issubclass(genl.GenlDatapathClient, DatapathClient)
    assert NETLINK == "netlink"
