"""BGP codec: round trips, wire layouts from the RFCs, and malformed input -> NOTIFICATION codes."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vrstack.control import bgp_codec as bc


def test_keepalive_is_a_bare_header() -> None:
    assert bc.encode(bc.Keepalive()) == b"\xff" * 16 + b"\x00\x13\x04"
    assert isinstance(bc.parse(bc.encode(bc.Keepalive())), bc.Keepalive)


def test_open_round_trip_with_capabilities() -> None:
    msg = bc.Open(asn=4200000001, hold_time=90, router_id="198.18.0.1")
    wire = bc.encode(msg)
    # A 4-byte ASN goes into My AS as AS_TRANS; the real one is in the capability.
    assert struct.unpack_from("!H", wire, 20)[0] == bc.AS_TRANS
    back = bc.parse(wire)
    assert isinstance(back, bc.Open)
    assert (back.asn, back.hold_time, back.router_id) == (4200000001, 90, "198.18.0.1")
    assert back.families == {(1, 128)} and back.as4 and back.route_refresh


def test_open_without_capabilities_means_ipv4_unicast_and_2_byte_as() -> None:
    body = struct.pack("!BHH4sB", 4, 65001, 180, bytes([198, 18, 0, 2]), 0)
    back = bc.parse(bc.MARKER + struct.pack("!HB", 19 + len(body), 1) + body)
    assert isinstance(back, bc.Open)
    assert back.families == {(1, 1)} and not back.as4 and back.asn == 65001


def test_rd_and_route_target_layouts() -> None:
    assert bc.encode_rd("198.18.0.1:7") == bytes([0, 1, 198, 18, 0, 1, 0, 7])
    assert bc.encode_rd("64512:8000000") == struct.pack("!HHI", 0, 64512, 8000000)
    assert bc.encode_rd("4200000000:5") == struct.pack("!HIH", 2, 4200000000, 5)
    for rd in ("198.18.0.1:7", "64512:8000000", "4200000000:5"):
        assert bc.decode_rd(bc.encode_rd(rd)) == rd
    rt = bc.encode_route_target("target:64512:8000001")
    assert rt == struct.pack("!BBHI", 0, 2, 64512, 8000001)
    assert bc.decode_ext_community(rt) == "target:64512:8000001"
    assert bc.decode_ext_community(bc.encode_encap("MPLSoUDP")) == "encap:MPLSoUDP"


def test_vpn_nlri_layout() -> None:
    # 198.18.5.3/32, label 17, RD 198.18.0.1:7: length 120 bits, label<<4|BoS, RD, 4 bytes.
    wire = bc.encode_vpn_nlri(bc.VpnPrefix("198.18.0.1:7", "198.18.5.3/32", 17))
    assert wire == bytes([120, 0, 1, 0x11]) + bc.encode_rd("198.18.0.1:7") + bytes([198, 18, 5, 3])
    assert bc.decode_vpn_nlri(wire) == [bc.VpnPrefix("198.18.0.1:7", "198.18.5.3/32", 17)]


prefixes = st.builds(
    lambda a, n: (
        f"198.{18 + (a >> 16 & 1)}.{a >> 8 & 255}.{a & 255}/32" if n == 32 else "198.18.0.0/15"
    ),
    st.integers(0, 2**17 - 1),
    st.sampled_from([32, 15]),
)
vpn = st.builds(
    bc.VpnPrefix,
    st.builds(lambda n: f"198.18.0.1:{n}", st.integers(0, 65535)),
    prefixes,
    st.integers(16, 2**20 - 1),
)


@settings(deadline=None, max_examples=60)  # no deadline: CI machines are loaded
@given(
    reach=st.lists(vpn, max_size=40),
    unreach=st.lists(vpn, max_size=40),
    targets=st.lists(st.integers(1, 2**32 - 1), max_size=5),
    as_path=st.lists(st.integers(1, 2**32 - 1), max_size=10),
    local_pref=st.none() | st.integers(0, 2**32 - 1),
)
def test_update_round_trip(
    reach: list[bc.VpnPrefix],
    unreach: list[bc.VpnPrefix],
    targets: list[int],
    as_path: list[int],
    local_pref: int | None,
) -> None:
    u = bc.Update(
        origin=0 if reach else None,
        as_path=as_path if reach else [],
        local_pref=local_pref,
        ext_communities=[bc.encode_route_target(f"target:64512:{t}") for t in targets]
        + [bc.encode_encap("VXLAN")],
        vpn_next_hop="198.18.2.11" if reach else None,
        vpn_reach=reach,
        vpn_unreach=unreach,
    )
    back = bc.parse(bc.encode(u))
    assert isinstance(back, bc.Update)
    assert back.vpn_reach == reach
    # Withdrawals carry no label (RFC 8277 0x800000 -> label 0x80000).
    assert [p.key() for p in back.vpn_unreach] == [p.key() for p in unreach]
    assert back.route_targets == [f"target:64512:{t}" for t in targets]
    assert back.encaps == ["VXLAN"]
    assert back.local_pref == local_pref
    if reach:
        assert back.as_path == as_path and back.vpn_next_hop == "198.18.2.11"


def test_end_of_rib() -> None:
    back = bc.parse(bc.encode(bc.Update(end_of_rib=True)))
    assert isinstance(back, bc.Update) and back.end_of_rib and not back.vpn_unreach


def _update(attrs: bytes, nlri: bytes = b"") -> bytes:
    body = b"\x00\x00" + struct.pack("!H", len(attrs)) + attrs + nlri
    return bc.MARKER + struct.pack("!HB", 19 + len(body), 2) + body


ORIGIN = bytes([0x40, 1, 1, 0])
EMPTY_PATH = bytes([0x40, 2, 0])
NEXT_HOP = bytes([0x40, 3, 4, 198, 18, 0, 1])
NLRI = bytes([24, 198, 18, 5])


@pytest.mark.parametrize(
    ("wire", "code", "subcode"),
    [
        (b"\xfe" + b"\xff" * 15 + b"\x00\x13\x04", 1, 1),  # marker
        (bc.MARKER + b"\x00\x12\x04", 1, 2),  # length below 19
        (bc.MARKER + b"\x10\x01\x04", 1, 2),  # length above 4096
        (bc.MARKER + b"\x00\x14\x04\x00", 1, 2),  # KEEPALIVE with a body
        (bc.MARKER + b"\x00\x13\x09", 1, 3),  # unknown type
        (bc.MARKER + b"\x00\x15\x01\x04\x00", 1, 2),  # OPEN shorter than 29
        # OPEN: version 3, hold time 1, identifier 0, parameters past the end, bad param type.
        (bc.MARKER + b"\x00\x1d\x01" + struct.pack("!BHH4sB", 3, 1, 90, b"\1\1\1\1", 0), 2, 1),
        (bc.MARKER + b"\x00\x1d\x01" + struct.pack("!BHH4sB", 4, 1, 1, b"\1\1\1\1", 0), 2, 6),
        (bc.MARKER + b"\x00\x1d\x01" + struct.pack("!BHH4sB", 4, 1, 90, b"\0\0\0\0", 0), 2, 3),
        (bc.MARKER + b"\x00\x1d\x01" + struct.pack("!BHH4sB", 4, 1, 90, b"\1\1\1\1", 9), 2, 0),
        (
            bc.MARKER
            + b"\x00\x1f\x01"
            + struct.pack("!BHH4sB", 4, 1, 90, b"\1\1\1\1", 2)
            + b"\x01\x00",
            2,
            4,
        ),
        # UPDATE: attribute list longer than the message.
        (bc.MARKER + b"\x00\x17\x02\x00\x00\x00\x09", 3, 1),
        (_update(bytes([0x40, 1, 5, 0])), 3, 5),  # attribute length past the list
        (_update(bytes([0x40, 1, 2, 0, 0])), 3, 5),  # ORIGIN of length 2
        (_update(bytes([0x40, 1, 1, 7]) + EMPTY_PATH + NEXT_HOP, NLRI), 3, 6),  # ORIGIN 7
        (_update(bytes([0xC0, 1, 1, 0]) + EMPTY_PATH + NEXT_HOP, NLRI), 3, 4),  # optional ORIGIN
        (_update(ORIGIN + bytes([0x40, 2, 3, 2, 2, 0]) + NEXT_HOP, NLRI), 3, 11),  # AS_PATH
        (_update(ORIGIN + NEXT_HOP, NLRI), 3, 3),  # no AS_PATH
        (_update(ORIGIN + EMPTY_PATH, NLRI), 3, 3),  # no NEXT_HOP
        (_update(ORIGIN + ORIGIN), 3, 1),  # repeated attribute
        (_update(bytes([0x40, 99, 0])), 3, 2),  # unknown well-known attribute
        (_update(ORIGIN + EMPTY_PATH + NEXT_HOP, bytes([33, 1, 2, 3, 4, 5])), 3, 10),
        # MP_REACH for VPN-IPv4 with a 4-byte next hop and with an NLRI past the end.
        (_update(bytes([0x80, 14, 9, 0, 1, 128, 4, 198, 18, 0, 1, 0])), 3, 9),
        (
            _update(
                ORIGIN
                + EMPTY_PATH
                + bytes([0x80, 14, 18, 0, 1, 128, 12])
                + bytes(8)
                + bytes([198, 18, 0, 1, 0, 120])
            ),
            3,
            9,
        ),
    ],
)
def test_malformed_messages_give_notification_codes(wire: bytes, code: int, subcode: int) -> None:
    with pytest.raises(bc.BgpError) as err:
        bc.parse(wire)
    assert (err.value.code, err.value.subcode) == (code, subcode)


def test_unknown_optional_attribute_is_ignored() -> None:
    back = bc.parse(_update(ORIGIN + EMPTY_PATH + NEXT_HOP + bytes([0xC0, 200, 2, 1, 2]), NLRI))
    assert isinstance(back, bc.Update) and back.nlri == ["198.18.5.0/24"]


@settings(deadline=None)
@given(st.binary(max_size=200))
def test_random_bytes_never_crash_the_parser(junk: bytes) -> None:
    """Anything after a valid header either parses or raises BgpError, never another error."""
    for mtype in (1, 2, 3, 4, 5):
        wire = bc.MARKER + struct.pack("!HB", 19 + len(junk), mtype) + junk
        with contextlib.suppress(bc.BgpError):
            bc.parse(wire)
