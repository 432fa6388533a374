"""The operator tools against a real vrouterd (control socket only)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from vrstack.datapath import cli
from vrstack.datapath.client import DatapathClient, DatapathError
from vrstack.datapath.codec import MAGIC, VERSION, Obj, Op
from vrstack.datapath.flowtable import FlowTable


def run(capsys: pytest.CaptureFixture[str], sock: Path, tool: str, *args: str) -> tuple[int, str]:
    rc = cli.TOOLS[tool](["--socket", str(sock), *args])
    out, err = capsys.readouterr()
    return rc, out + err


def test_vif_nh_rt_mpls_vxlan(capsys: pytest.CaptureFixture[str], vrouterd: Path) -> None:
    s = vrouterd
    assert run(capsys, s, "vif", "--add", "3", "--vrf", "1", "--mac", "02:00:c6:13:01:0b")[0] == 0
    assert run(capsys, s, "vif", "--add", "0", "--type", "fabric", "--ip", "198.18.0.1")[0] == 0
    rc, out = run(capsys, s, "vif", "--list", "--json")
    assert rc == 0
    vifs = {v["idx"]: v for v in json.loads(out)}
    assert vifs[3]["type"] == "virtual" and vifs[3]["vrf"] == 1
    assert vifs[3]["mac"] == "02:00:c6:13:01:0b"
    assert vifs[0]["ip"] == "198.18.0.1"

    tunnel = ["--type", "tunnel", "--encap", "vxlan", "--oif", "0", "--sip", "198.18.0.1"]
    assert run(capsys, s, "nh", "--add", "10", *tunnel, "--dip", "198.18.0.2")[0] == 0
    rc, out = run(capsys, s, "nh", "--add", "11", *tunnel[:-2])
    assert rc == 1 and "EINVAL" in out  # a tunnel needs both endpoints
    assert (
        run(
            capsys,
            s,
            "nh",
            "--add",
            "12",
            "--type",
            "composite",
            "--ecmp",
            "--components",
            "10:5001,10:5002",
        )[0]
        == 0
    )
    rc, out = run(capsys, s, "nh", "--get", "12", "--json")
    assert json.loads(out)[0]["components"] == [10, 5001, 10, 5002]
    assert json.loads(out)[0]["flags"] == "ecmp"

    assert (
        run(
            capsys,
            s,
            "rt",
            "--add",
            "--vrf",
            "1",
            "--prefix",
            "198.19.1.0/24",
            "--nh",
            "10",
            "--label",
            "5001",
        )[0]
        == 0
    )
    assert (
        run(capsys, s, "rt", "--add", "--vrf", "1", "--prefix", "2001:db8::/32", "--nh", "10")[0]
        == 0
    )
    rc, out = run(capsys, s, "rt", "--add", "--vrf", "1", "--prefix", "198.19.1.1/24", "--nh", "10")
    assert rc == 2 and "host bits" in out
    rc, out = run(capsys, s, "rt", "--dump", "--vrf", "1")
    assert rc == 0 and "198.19.1.0" in out and "5001" in out
    rc, out = run(capsys, s, "rt", "--dump", "--vrf", "1", "--family", "inet6", "--json")
    assert [r["prefix"] for r in json.loads(out)] == ["2001:db8::"]
    assert run(capsys, s, "rt", "--delete", "--vrf", "1", "--prefix", "198.19.1.0/24")[0] == 0
    rc, out = run(capsys, s, "rt", "--delete", "--vrf", "1", "--prefix", "198.19.1.0/24")
    assert rc == 1 and "ENOENT" in out

    assert run(capsys, s, "mpls", "--add", "100", "--nh", "10")[0] == 0
    rc, out = run(capsys, s, "mpls", "--list", "--json")
    assert json.loads(out) == [{"label": 100, "nh": 10}]
    assert run(capsys, s, "vxlan", "--add", "5001", "--vrf", "1")[0] == 0
    rc, out = run(capsys, s, "vxlan", "--get", "5001", "--json")
    assert json.loads(out) == [{"vni": 5001, "vrf": 1}]
    assert run(capsys, s, "mpls", "--delete", "100")[0] == 0
    assert run(capsys, s, "mpls", "--get", "100")[0] == 1


def test_flows_and_shared_table(capsys: pytest.CaptureFixture[str], vrouterd: Path) -> None:
    s = vrouterd
    key = ["--vrf", "1", "--proto", "6", "--sport", "40000", "--dport", "80"]
    rc, out = run(
        capsys,
        s,
        "flow",
        "--add",
        "new",
        *key,
        "--sip",
        "198.19.1.11",
        "--dip",
        "198.19.1.21",
        "--action",
        "forward",
        "--json",
    )
    assert rc == 0
    fwd = json.loads(out)[0]["index"]
    rc, out = run(
        capsys,
        s,
        "flow",
        "--add",
        "new",
        "--vrf",
        "1",
        "--proto",
        "6",
        "--sport",
        "80",
        "--dport",
        "40000",
        "--sip",
        "198.19.1.21",
        "--dip",
        "198.19.1.11",
        "--action",
        "drop",
        "--rindex",
        str(fwd),
        "--json",
    )
    rev = json.loads(out)[0]["index"]
    rc, out = run(capsys, s, "flow", "--list", "--json")
    flows = {f["index"]: f for f in json.loads(out)}
    assert flows[fwd]["rindex"] == rev and flows[rev]["rindex"] == fwd
    assert flows[rev]["action"] == "drop"

    # The agent's view: the same entries in the mmapped file, no messages.
    with FlowTable(s.parent / "flows") as table:
        assert table.nentries == 1024
        entries = {e.index: e for e in table.entries()}
    assert set(entries) == {fwd, rev}
    e = entries[fwd]
    assert (str(e.sip), str(e.dip), e.sport, e.dport, e.proto) == (
        "198.19.1.11",
        "198.19.1.21",
        40000,
        80,
        6,
    )
    assert e.action == "forward" and e.rindex == rev and e.vrf == 1
    rc, out = run(capsys, s, "flow", "--list", "--mmap", str(s.parent / "flows"), "--json")
    assert rc == 0 and {f["index"] for f in json.loads(out)} == {fwd, rev}
    (s.parent / "junk").write_bytes(b"x" * 200)
    rc, out = run(capsys, s, "flow", "--list", "--mmap", str(s.parent / "junk"))
    assert rc == 1 and "not a version 1 flow table" in out

    assert run(capsys, s, "flow", "--add", str(rev), "--action", "forward")[0] == 0
    assert run(capsys, s, "flow", "--delete", str(fwd))[0] == 0
    rc, out = run(capsys, s, "flow", "--get", str(rev), "--json")
    assert json.loads(out)[0]["action"] == "forward"
    assert "rindex" not in json.loads(out)[0]  # the link went with the deleted flow
    assert run(capsys, s, "flow", "--get", str(fwd))[0] == 1


def test_dropstats_and_errors(capsys: pytest.CaptureFixture[str], vrouterd: Path) -> None:
    rc, out = run(capsys, vrouterd, "dropstats", "--all", "--json")
    rows = json.loads(out)
    assert rc == 0 and len(rows) == 20 and rows[2] == {"reason": "no_route", "packets": 0}
    assert run(capsys, vrouterd, "dropstats", "--clear")[0] == 0
    rc, out = run(capsys, vrouterd, "vif", "--add", "3", "--mac", "not-a-mac")
    assert rc == 1 and "EINVAL" in out
    rc, out = run(capsys, vrouterd.parent / "missing.sock", "vif", "--list")
    assert rc == 1 and "missing.sock" in out
    # A raw malformed request gets an error reply, and the daemon lives on.
    with DatapathClient(str(vrouterd)) as c:
        c.sock.send(struct.pack(">HBBBBHII", MAGIC, VERSION, 1, 1, 0, 0, 7, 32))  # says 32, is 16
        reply = c.sock.recv(4096)
        assert reply[15] == 24 and reply[-4:] == struct.pack(">i", -90)
        with pytest.raises(DatapathError) as err:
            c.call(Op.GET, Obj.VIF, VIF_IDX=200)
        assert "ENOENT" in str(err.value)
        assert len(c.dump(Obj.VIF)) == 0


def test_dump_many_routes(vrouterd: Path) -> None:
    with DatapathClient(str(vrouterd)) as c:
        for i in range(1500):
            c.call(
                Op.ADD,
                Obj.ROUTE,
                RT_VRF=2,
                RT_FAMILY=1,
                RT_PREFIX=f"198.18.{i // 256}.{i % 256}",
                RT_PLEN=32,
                RT_NH=1,
            )
        routes = c.dump(Obj.ROUTE, RT_VRF=2, RT_FAMILY=1)
    assert len(routes) == 1500
    assert len({str(r.attrs["RT_PREFIX"]) for r in routes}) == 1500
