"""The Python codec against the golden vectors and the C header."""

from __future__ import annotations

import ipaddress
import random
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from vrstack.datapath import codec
from vrstack.datapath.codec import CodecError, Kind, Message

VECTORS = Path(__file__).resolve().parents[3] / "vrouter-src" / "tests" / "vectors"


@dataclass
class Vector:
    name: str
    msg: Message | None = None
    base: str | None = None
    edits: list[tuple[str, str]] = field(default_factory=list)
    expect: int = 0


def _value(kind: Kind, text: str) -> codec.Value:
    if kind == Kind.MAC:
        return text.lower()
    if kind == Kind.IP:
        return ipaddress.ip_address(text)
    if kind == Kind.STR:
        return text
    if kind in (Kind.U32A, Kind.U64A):
        return [int(x, 0) for x in text.split(",")]
    return int(text, 0)


def load_manifest() -> list[Vector]:
    vectors: list[Vector] = []
    for line in (VECTORS / "manifest.txt").read_text().splitlines():
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            vectors.append(Vector(line.strip("[]")))
            continue
        word, _, rest = line.partition(" ")
        vec = vectors[-1]
        if word == "hdr":
            op, obj, flags, seq = (int(x, 0) for x in rest.split())
            vec.msg = Message(op, obj, flags, seq)
        elif word == "from":
            vec.base = rest
        elif word in ("truncate", "set", "append", "pad", "fixlen"):
            vec.edits.append((word, rest))
        elif word == "expect":
            vec.expect = 0 if rest == "ok" else int(rest.split()[1])
        else:
            assert vec.msg is not None, f"{vec.name}: attribute before hdr"
            _, kind, _ = codec.ATTRS[codec.ATTR_IDS[word]]
            vec.msg.attrs[word] = _value(kind, rest)
    return vectors


def build(vec: Vector, by_name: dict[str, Vector]) -> bytes:
    """The bytes the manifest describes, made with the Python encoder."""
    if vec.msg is not None:
        return codec.encode(vec.msg)
    assert vec.base is not None
    data = bytearray(build(by_name[vec.base], by_name))
    for op, arg in vec.edits:
        if op == "truncate":
            del data[int(arg, 0) :]
        elif op == "set":
            off, val = arg.split()
            data[int(off, 0)] = int(val, 0)
        elif op == "append":
            data += bytes.fromhex(arg)
        elif op == "pad":
            data += bytes(int(arg, 0))
        elif op == "fixlen":
            struct.pack_into(">I", data, 12, len(data))
    return bytes(data)


MANIFEST = load_manifest()
BY_NAME = {v.name: v for v in MANIFEST}


def test_manifest_covers_every_file() -> None:
    files = {p.stem for p in VECTORS.glob("*.bin")}
    assert files == set(BY_NAME)
    assert len(MANIFEST) >= 40


@pytest.mark.parametrize("vec", MANIFEST, ids=lambda v: v.name)
def test_vector(vec: Vector) -> None:
    data = (VECTORS / f"{vec.name}.bin").read_bytes()
    assert build(vec, BY_NAME) == data
    if vec.expect:
        with pytest.raises(CodecError) as err:
            codec.decode(data)
        assert err.value.code == vec.expect
        return
    msg = codec.decode(data)
    assert vec.msg is not None
    assert (msg.op, msg.obj, msg.flags, msg.seq) == (
        vec.msg.op,
        vec.msg.obj,
        vec.msg.flags,
        vec.msg.seq,
    )
    assert msg.attrs == vec.msg.attrs
    assert codec.encode(msg) == data


def test_table_matches_c_header() -> None:
    header = (VECTORS.parents[1] / "include" / "vr_msg.h").read_text()
    found = {
        int(i): (name, Kind[kind], int(mx))
        for i, name, kind, mx in re.findall(r"X\((\d+),\s*(\w+),\s*VR_K_(\w+),\s*(\d+)\)", header)
    }
    assert found == codec.ATTRS
    assert re.search(rf"#define VR_MSG_VERSION {codec.VERSION}u\b", header)
    ops = dict(re.findall(r"VR_OP_(\w+) = (\d+)", header))
    assert {k: int(v) for k, v in ops.items() if k != "MAX"} == {o.name: o.value for o in codec.Op}


def test_drop_reasons_match_c_header() -> None:
    defs = (VECTORS.parents[1] / "include" / "vr_defs.h").read_text()
    flags = dict(re.findall(r"#define VR_FLOW_F_(\w+) (0x[0-9a-f]+)u", defs))
    assert {k: int(v, 16) for k, v in flags.items()} == {
        "VALID": codec.FLOW_F_VALID,
        "IPV6": codec.FLOW_F_IPV6,
        "RFLOW": codec.FLOW_F_RFLOW,
        "VRFT": codec.FLOW_F_VRFT,
    }
    found = re.findall(r"X\((\d+), (\w+)\)", defs)
    assert [name.lower() for _, name in found] == codec.DROP_REASONS
    assert [int(n) for n, _ in found] == list(range(len(codec.DROP_REASONS)))


def test_encode_rejects_bad_values() -> None:
    with pytest.raises(CodecError) as err:
        codec.encode(Message(codec.Op.ADD, codec.Obj.VIF, attrs={"VIF_TYPE": 256}))
    assert err.value.code == codec.Err.ERANGE
    with pytest.raises(CodecError):
        codec.encode(Message(codec.Op.ADD, codec.Obj.VIF, attrs={"NOPE": 1}))
    with pytest.raises(CodecError):
        codec.encode(Message(codec.Op.ADD, codec.Obj.VIF, attrs={"VIF_MAC": "zz"}))
    with pytest.raises(CodecError):
        codec.encode(Message(codec.Op.ADD, codec.Obj.VIF, attrs={"VIF_NAME": "x" * 16}))
    with pytest.raises(CodecError):
        codec.encode(Message(9, codec.Obj.VIF))


def test_split_stream() -> None:
    a = codec.encode(Message(codec.Op.GET, codec.Obj.VIF, attrs={"VIF_IDX": 1}))
    b = codec.encode(Message(codec.Op.DUMP, codec.Obj.NH))
    assert codec.split(a + b) == [a, b]
    with pytest.raises(CodecError):
        codec.split(a + b[:-1])


def test_random_corruption_only_raises_codec_error() -> None:
    rng = random.Random(5)
    bases = [(VECTORS / f"{v.name}.bin").read_bytes() for v in MANIFEST if not v.expect]
    for _ in range(5000):
        data = bytearray(rng.choice(bases))
        for _ in range(rng.randint(1, 4)):
            if data and rng.random() < 0.6:
                data[rng.randrange(len(data))] = rng.randrange(256)
            else:
                del data[rng.randrange(len(data) + 1) :]
        if len(data) >= 16 and rng.random() < 0.5:
            struct.pack_into(">I", data, 12, len(data))
        try:
            msg = codec.decode(bytes(data))
        except CodecError:
            continue
        assert codec.decode(codec.encode(msg)) == msg
