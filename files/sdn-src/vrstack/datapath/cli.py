"""Operator tools for the datapath: vif, nh, rt, mpls, vxlan, flow, dropstats.

Each lists, gets, adds and deletes one kind of object through the control
socket, printing a table or, with --json, JSON.  Run as
`python -m vrstack.datapath.cli TOOL ...` or through the installed scripts.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from vrstack.datapath import codec
from vrstack.datapath.client import DEFAULT_SOCKET, DatapathClient, DatapathError, connect
from vrstack.datapath.codec import Message, Obj, Op
from vrstack.datapath.flowtable import FlowTable, FlowTableError

Row = dict[str, Any]

_NAMED = {
    "VIF_TYPE": codec.VIF_TYPES,
    "NH_TYPE": codec.NH_TYPES,
    "RT_FAMILY": codec.FAMILIES,
    "FL_ACTION": codec.FLOW_ACTIONS,
}
_PREFIXES = ("VIF_", "NH_", "RT_", "LBL_", "VNI_", "FL_", "DS_")


def _flag_names(value: int, names: dict[int, str]) -> str:
    return ",".join(n for bit, n in names.items() if value & bit) or "-"


def to_row(msg: Message) -> Row:
    """A reply as a plain dict: prefix dropped, enums named, addresses as text."""
    row: Row = {}
    for name, value in msg.attrs.items():
        if name == "RESULT":
            continue
        key = name
        for prefix in _PREFIXES:
            if name.startswith(prefix):
                key = name[len(prefix) :]
        key = key.lower()
        if name in _NAMED and isinstance(value, int):
            row[key] = _NAMED[name].get(value, str(value))
        elif isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address):
            row[key] = str(value)
        else:
            row[key] = value
    if msg.obj == Obj.NH and "flags" in row:
        row["flags"] = _flag_names(row["flags"], codec.NH_FLAGS)
    return row


def print_table(rows: list[Row], columns: Sequence[str]) -> None:
    cells = [[str(r.get(c, "")) for c in columns] for r in rows]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(columns)]
    print("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())


def _parser(prog: str, doc: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=doc)
    p.add_argument(
        "--socket",
        default=os.environ.get("VROUTER_SOCKET", DEFAULT_SOCKET),
        help='datapath control socket, or "netlink" for vrouter.ko (env VROUTER_SOCKET)',
    )
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return p


def _mode(p: argparse.ArgumentParser, key_help: str) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--list", "-l", "--dump", action="store_true", dest="list", help="list all")
    g.add_argument("--get", metavar="KEY", help=f"show one ({key_help})")
    g.add_argument("--add", metavar="KEY", help=f"add or replace ({key_help})")
    g.add_argument("--delete", metavar="KEY", help=f"delete ({key_help})")


def _int(text: str, what: str) -> int:
    try:
        return int(text, 0)
    except ValueError:
        raise SystemExit(f"{what}: {text!r} is not a number") from None


def _run(
    prog: str,
    argv: Sequence[str] | None,
    build: Callable[[argparse.ArgumentParser], None],
    act: Callable[[DatapathClient, argparse.Namespace], list[Row] | None],
    columns: Sequence[str],
    doc: str,
) -> int:
    p = _parser(prog, doc)
    build(p)
    args = p.parse_args(argv)
    try:
        with connect(args.socket) as client:
            rows = act(client, args)
    except OSError as exc:
        print(f"{prog}: {args.socket}: {exc}", file=sys.stderr)
        return 1
    except (DatapathError, codec.CodecError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    except ValueError as exc:  # a malformed address or MAC on the command line
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    if rows is None:
        return 0
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, columns)
    return 0


def _crud(
    client: DatapathClient,
    args: argparse.Namespace,
    obj: Obj,
    key_attr: str,
    add_attrs: Callable[[], dict[str, Any]],
    dump_attrs: dict[str, Any] | None = None,
) -> list[Row] | None:
    if args.list:
        return [to_row(m) for m in client.dump(obj, **(dump_attrs or {}))]
    key = _int(args.get or args.add or args.delete, key_attr.lower())
    if args.get:
        return [to_row(client.call(Op.GET, obj, **{key_attr: key}))]
    if args.delete:
        client.call(Op.DEL, obj, **{key_attr: key})
        return None
    reply = client.call(Op.ADD, obj, **{key_attr: key}, **add_attrs())
    return [to_row(reply)] if obj == Obj.FLOW else None


def _reverse(names: dict[int, str], value: str, what: str) -> int:
    for num, name in names.items():
        if name == value:
            return num
    raise SystemExit(f"{what}: {value!r} is not one of {', '.join(names.values())}")


# ---------------- vif ----------------


def vif_main(argv: Sequence[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser) -> None:
        _mode(p, "vif index")
        p.add_argument("--type", choices=list(codec.VIF_TYPES.values()), default="virtual")
        p.add_argument("--vrf", type=int, default=0)
        p.add_argument("--mac")
        p.add_argument("--mtu", type=int)
        p.add_argument("--name", help="OS interface (attached by the datapath host)")
        p.add_argument("--ip", help="the vif's own address (fabric/vhost0: tunnel endpoint)")
        p.add_argument("--policy", action="store_true", help="flow lookup for this vif")

    def act(c: DatapathClient, a: argparse.Namespace) -> list[Row] | None:
        def attrs() -> dict[str, Any]:
            out: dict[str, Any] = {
                "VIF_TYPE": _reverse(codec.VIF_TYPES, a.type, "--type"),
                "VIF_VRF": a.vrf,
                "VIF_FLAGS": codec.VIF_F_POLICY if a.policy else 0,
            }
            for key, val in (("VIF_MAC", a.mac), ("VIF_MTU", a.mtu), ("VIF_NAME", a.name)):
                if val is not None:
                    out[key] = val
            if a.ip:
                out["VIF_IP"] = ipaddress.ip_address(a.ip)
            return out

        return _crud(c, a, Obj.VIF, "VIF_IDX", attrs)

    cols = ("idx", "name", "type", "vrf", "mac", "ip", "flags", "rx_pkts", "tx_pkts", "drops")
    return _run("vif", argv, build, act, cols, "Datapath interfaces.")


# ---------------- nh ----------------


def _components(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        nh, _, label = part.partition(":")
        out += [_int(nh, "--components"), _int(label or "0", "--components")]
    return out


def nh_main(argv: Sequence[str] | None = None) -> int:
    encaps = {"mpls-gre": 0x02, "mpls-udp": 0x04, "vxlan": 0x08}

    def build(p: argparse.ArgumentParser) -> None:
        _mode(p, "nexthop id")
        p.add_argument("--type", choices=list(codec.NH_TYPES.values()), default="encap")
        p.add_argument("--vrf", type=int, default=0)
        p.add_argument("--oif", type=int, help="outgoing vif")
        p.add_argument("--smac")
        p.add_argument("--dmac")
        p.add_argument("--sip", help="tunnel source")
        p.add_argument("--dip", help="tunnel destination")
        p.add_argument("--encap", choices=list(encaps), help="tunnel kind")
        p.add_argument("--l2", action="store_true", help="encap: deliver whole frames")
        p.add_argument("--ecmp", action="store_true")
        p.add_argument("--mcast", action="store_true")
        p.add_argument("--components", help="composite: NH[:LABEL],...")

    def act(c: DatapathClient, a: argparse.Namespace) -> list[Row] | None:
        def attrs() -> dict[str, Any]:
            flags = (0x01 if a.l2 else 0) | (0x10 if a.ecmp else 0) | (0x20 if a.mcast else 0)
            if a.encap:
                flags |= encaps[a.encap]
            out: dict[str, Any] = {
                "NH_TYPE": _reverse(codec.NH_TYPES, a.type, "--type"),
                "NH_FLAGS": flags,
                "NH_VRF": a.vrf,
            }
            for key, val in (("NH_OIF", a.oif), ("NH_SMAC", a.smac), ("NH_DMAC", a.dmac)):
                if val is not None:
                    out[key] = val
            for key, val in (("NH_TUN_SIP", a.sip), ("NH_TUN_DIP", a.dip)):
                if val:
                    out[key] = ipaddress.ip_address(val)
            if a.components:
                out["NH_COMPONENTS"] = _components(a.components)
            return out

        return _crud(c, a, Obj.NH, "NH_ID", attrs)

    cols = ("id", "type", "flags", "vrf", "oif", "dmac", "tun_sip", "tun_dip", "components")
    return _run("nh", argv, build, act, cols, "Datapath nexthops.")


# ---------------- rt ----------------


def rt_main(argv: Sequence[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group(required=True)
        g.add_argument("--dump", "--list", "-l", action="store_true", dest="list")
        g.add_argument("--get", action="store_true")
        g.add_argument("--add", action="store_true")
        g.add_argument("--delete", action="store_true")
        p.add_argument("--vrf", type=int, required=True)
        p.add_argument("--family", choices=list(codec.FAMILIES.values()))
        p.add_argument("--prefix", help="ADDRESS/LEN")
        p.add_argument("--mac", help="bridge entry")
        p.add_argument("--nh", type=int)
        p.add_argument("--label", type=int, help="MPLS label or VNI")

    def act(c: DatapathClient, a: argparse.Namespace) -> list[Row] | None:
        family = a.family or ("bridge" if a.mac else "inet")
        key: dict[str, Any] = {"RT_VRF": a.vrf}
        if a.prefix:
            net = ipaddress.ip_network(a.prefix, strict=True)
            family = a.family or ("inet" if net.version == 4 else "inet6")
            key.update(RT_PREFIX=net.network_address, RT_PLEN=net.prefixlen)
        elif a.mac:
            key["RT_MAC"] = a.mac
        elif not a.list:
            raise SystemExit("rt: --prefix or --mac is required")
        key["RT_FAMILY"] = _reverse(codec.FAMILIES, family, "--family")
        if a.list:
            return [to_row(m) for m in c.dump(Obj.ROUTE, **key)]
        if a.get:
            return [to_row(c.call(Op.GET, Obj.ROUTE, **key))]
        if a.delete:
            c.call(Op.DEL, Obj.ROUTE, **key)
            return None
        if a.nh is None:
            raise SystemExit("rt: --add needs --nh")
        key["RT_NH"] = a.nh
        if a.label is not None:
            key.update(RT_LABEL=a.label, RT_FLAGS=codec.RT_F_LABEL)
        c.call(Op.ADD, Obj.ROUTE, **key)
        return None

    cols = ("vrf", "family", "prefix", "plen", "mac", "nh", "label")
    return _run("rt", argv, build, act, cols, "Datapath routes (IPv4, IPv6, bridge).")


# ---------------- mpls, vxlan ----------------


def mpls_main(argv: Sequence[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser) -> None:
        _mode(p, "label")
        p.add_argument("--nh", type=int)

    def act(c: DatapathClient, a: argparse.Namespace) -> list[Row] | None:
        return _crud(c, a, Obj.LABEL, "LBL_LABEL", lambda: {"LBL_NH": a.nh})

    return _run("mpls", argv, build, act, ("label", "nh"), "MPLS label table.")


def vxlan_main(argv: Sequence[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser) -> None:
        _mode(p, "VNI")
        p.add_argument("--vrf", type=int)

    def act(c: DatapathClient, a: argparse.Namespace) -> list[Row] | None:
        return _crud(c, a, Obj.VNI, "VNI_VNI", lambda: {"VNI_VRF": a.vrf})

    return _run("vxlan", argv, build, act, ("vni", "vrf"), "VXLAN VNI table.")


# ---------------- flow ----------------


def flow_main(argv: Sequence[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser) -> None:
        _mode(p, "flow index; for --add, 'new' to add by key")
        p.add_argument("--vrf", type=int)
        p.add_argument("--sip")
        p.add_argument("--dip")
        p.add_argument("--proto", type=int)
        p.add_argument("--sport", type=int, default=0)
        p.add_argument("--dport", type=int, default=0)
        p.add_argument("--action", choices=[a for a in codec.FLOW_ACTIONS.values() if a != "hold"])
        p.add_argument("--rindex", type=int)
        p.add_argument(
            "--mmap", metavar="FILE", help="with --list: read the shared flow table file instead"
        )

    def act(c: DatapathClient, a: argparse.Namespace) -> list[Row] | None:
        if a.add == "new":
            if None in (a.vrf, a.sip, a.dip, a.proto, a.action):
                raise SystemExit("flow: --add new needs --vrf --sip --dip --proto --action")
            attrs: dict[str, Any] = {
                "FL_VRF": a.vrf,
                "FL_SIP": ipaddress.ip_address(a.sip),
                "FL_DIP": ipaddress.ip_address(a.dip),
                "FL_PROTO": a.proto,
                "FL_SPORT": a.sport,
                "FL_DPORT": a.dport,
                "FL_ACTION": _reverse(codec.FLOW_ACTIONS, a.action, "--action"),
            }
            if a.rindex is not None:
                attrs["FL_RINDEX"] = a.rindex
            return [to_row(c.call(Op.ADD, Obj.FLOW, **attrs))]

        def attrs_for_index() -> dict[str, Any]:
            if not a.action:
                raise SystemExit("flow: --add INDEX needs --action")
            out: dict[str, Any] = {"FL_ACTION": _reverse(codec.FLOW_ACTIONS, a.action, "--action")}
            if a.rindex is not None:
                out["FL_RINDEX"] = a.rindex
            return out

        return _crud(c, a, Obj.FLOW, "FL_INDEX", attrs_for_index)

    cols = ("index", "vrf", "sip", "sport", "dip", "dport", "proto", "action", "rindex", "pkts")
    args = list(sys.argv[1:] if argv is None else argv)
    if "--mmap" in args and ("--list" in args or "-l" in args or "--dump" in args):
        return _flow_from_file(args, cols)
    return _run("flow", argv, build, act, cols, "Flow table.")


def _flow_from_file(args: list[str], cols: Sequence[str]) -> int:
    """flow --list --mmap FILE: the agent's view, no messages."""
    path = args[args.index("--mmap") + 1] if args.index("--mmap") + 1 < len(args) else ""
    try:
        with FlowTable(path) as table:
            rows = [
                {
                    "index": e.index,
                    "vrf": e.vrf,
                    "sip": str(e.sip),
                    "sport": e.sport,
                    "dip": str(e.dip),
                    "dport": e.dport,
                    "proto": e.proto,
                    "action": e.action,
                    "rindex": "" if e.rindex is None else e.rindex,
                    "pkts": e.packets,
                    "bytes": e.bytes,
                }
                for e in table.entries()
            ]
    except (OSError, ValueError, FlowTableError) as exc:
        print(f"flow: {path or '--mmap needs a FILE'}: {exc}", file=sys.stderr)
        return 1
    if "--json" in args:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, cols)
    return 0


# ---------------- dropstats ----------------


def dropstats_main(argv: Sequence[str] | None = None) -> int:
    def build(p: argparse.ArgumentParser) -> None:
        p.add_argument("--clear", action="store_true", help="reset the counters")
        p.add_argument("--all", action="store_true", help="show zero counters too")

    def act(c: DatapathClient, a: argparse.Namespace) -> list[Row] | None:
        if a.clear:
            c.call(Op.DEL, Obj.DROPSTATS)
            return None
        counters = c.call(Op.GET, Obj.DROPSTATS).attrs["DS_COUNTERS"]
        assert isinstance(counters, list)
        names = codec.DROP_REASONS + [f"reason_{i}" for i in range(len(codec.DROP_REASONS), 64)]
        return [{"reason": names[i], "packets": n} for i, n in enumerate(counters) if n or a.all]

    return _run("dropstats", argv, build, act, ("reason", "packets"), "Drop counters by reason.")


TOOLS: dict[str, Callable[[Sequence[str] | None], int]] = {
    "vif": vif_main,
    "nh": nh_main,
    "rt": rt_main,
    "mpls": mpls_main,
    "vxlan": vxlan_main,
    "flow": flow_main,
    "dropstats": dropstats_main,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in TOOLS:
        print(f"usage: python -m vrstack.datapath.cli {{{','.join(TOOLS)}}} ...", file=sys.stderr)
        return 2
    return TOOLS[args[0]](args[1:])


if __name__ == "__main__":
    sys.exit(main())
