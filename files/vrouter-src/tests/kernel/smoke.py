"""vrouter.ko in a real kernel (run as root inside the test VM, module loaded).

Checks the generic netlink channel (every golden vector and random
corruptions of them get well-formed replies and malformed ones are refused),
vifs attached to netdevices (fabric, vhost0, pkt0, a veth), the flow table
through /dev/vrouter_flow, and a clean state afterwards.  Exit status 0 = pass.

    python3 smoke.py --sdn DIR --vectors DIR --fabric eth1 --flows N
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
from pathlib import Path


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--sdn", required=True, help="directory holding the vrstack package")
    p.add_argument("--vectors", required=True, type=Path)
    p.add_argument("--fabric", default="eth1")
    p.add_argument("--flows", type=int, required=True)
    a = p.parse_args()
    sys.path.insert(0, a.sdn)
    from vrstack.datapath import codec
    from vrstack.datapath.client import NETLINK, connect
    from vrstack.datapath.codec import Flag, Obj, Op
    from vrstack.datapath.flowtable import FlowTable

    failures: list[str] = []

    def check(ok: bool, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            failures.append(what)

    def run(*cmd: str) -> None:
        subprocess.run(cmd, check=True, timeout=20)

    with connect(NETLINK) as c:
        # Every golden vector as a request: a well-formed reply, an error for
        # the malformed ones, never a crash.
        vectors = sorted(a.vectors.glob("*.bin"))
        bad_refused = 0
        for v in vectors:
            raw = v.read_bytes()
            if len(raw) > 65531:  # does not fit a netlink attribute: refused locally
                try:
                    c.exchange(raw)
                except codec.CodecError:
                    bad_refused += 1
                    continue
                raise AssertionError(f"{v.name}: {len(raw)} bytes sent")
            data = c.exchange(raw)
            replies = [codec.decode(part) for part in codec.split(data)]
            assert replies and all(r.flags & Flag.REPLY for r in replies), v.name
            if replies[-1].result:
                bad_refused += 1
        check(len(vectors) >= 40, f"{len(vectors)} golden vectors answered")
        check(bad_refused >= 26, f"{bad_refused} vectors refused (26 malformed + replies)")
        # Random corruption of valid requests: always a well-formed answer.
        rnd = random.Random(6)
        bases = [v.read_bytes() for v in vectors]
        for _ in range(3000):
            b = bytearray(rnd.choice(bases)[:65531])
            for _ in range(rnd.randint(1, 4)):
                if b and rnd.random() < 0.8:
                    b[rnd.randrange(len(b))] = rnd.randrange(256)
                else:
                    b = b[: rnd.randrange(len(b) + 1)]
            if not b:
                continue
            for part in codec.split(c.exchange(bytes(b))):
                codec.decode(part)
        check(True, "3000 corrupted requests answered with well-formed replies")
        # Leave no state from the vectors behind.
        for m in c.dump(Obj.VIF):
            c.call(Op.DEL, Obj.VIF, VIF_IDX=m.attrs["VIF_IDX"])

        # vifs onto netdevices.
        run("ip", "link", "add", "vrkv0", "type", "veth", "peer", "name", "vrkv1")
        c.call(Op.ADD, Obj.VIF, VIF_IDX=0, VIF_TYPE=1, VIF_NAME=a.fabric)
        c.call(Op.ADD, Obj.VIF, VIF_IDX=1, VIF_TYPE=2, VIF_NAME="vhost0")
        c.call(Op.ADD, Obj.VIF, VIF_IDX=2, VIF_TYPE=4, VIF_NAME="pkt0")
        c.call(Op.ADD, Obj.VIF, VIF_IDX=3, VIF_TYPE=3, VIF_VRF=1, VIF_NAME="vrkv0")
        names = {m.attrs["VIF_IDX"]: m.attrs.get("VIF_NAME") for m in c.dump(Obj.VIF)}
        check(names == {0: a.fabric, 1: "vhost0", 2: "pkt0", 3: "vrkv0"}, f"vifs {names}")
        dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
        for i, n in names.items():
            check(f"vif {i}: attached {n}" in dmesg, f"vif {i} attached to {n}")
        # The veth goes away: its vif lets go of it, deleting the vif works.
        run("ip", "link", "del", "vrkv0")
        dmesg = subprocess.run(["dmesg"], capture_output=True, text=True).stdout
        check("vif 3: detached vrkv0" in dmesg, "vif 3 released when its veth was deleted")
        for i in (3, 2, 1, 0):
            c.call(Op.DEL, Obj.VIF, VIF_IDX=i)
        check(c.dump(Obj.VIF) == [], "all vifs deleted")
        # The flow table seen through mmap agrees with the message view.
        with FlowTable("/dev/vrouter_flow") as ft:
            check(ft.nentries == a.flows, f"flow table via mmap: {ft.nentries} entries")
            listed = {f.attrs["FL_INDEX"] for f in c.dump(Obj.FLOW)}
            mapped = {e.index for e in ft.entries()}
            check(listed == mapped and len(mapped) > 0, f"flows by mmap = by message: {mapped}")
            for i in listed:
                c.call(Op.DEL, Obj.FLOW, FL_INDEX=i)
            check(list(ft.entries()) == [], "flows deleted, mmap view empty")
    print("smoke: " + ("PASS" if not failures else f"{len(failures)} FAILED"), flush=True)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
