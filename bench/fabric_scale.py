#!/usr/bin/env python3
"""Large fabrics: how the inventory plugin and host-var generation grow with size.

For each size RACKSxCOMPUTES (computes per rack) a fabric file is generated: three
controllers, one control node per ten racks (at least two, in different racks), one
analytics node, a spine and a gateway. The same inventory is also written as a plain
static YAML file (every group, host var and `vrstack_fabric`, as the plugin yields them),
so each figure has a baseline from the same run:

  model      build_model + host_vars + groups in-process (the plugin's own work)
  cli        `ansible-inventory --list --export` on the fabric file, and on the static YAML
  list       `ansible-inventory --list` (no --export) on the fabric file, up to --list-max
             hosts: it copies every group var, the whole model included, into every host
  vars       in-process InventoryManager parse, then VariableManager.get_vars for every
             host (what ansible-playbook does before the first task), on both inventories

Every measurement runs in a child process; its peak memory is that child's ru_maxrss.
Printed: CPU seconds (of the child, or of the timed part in-process), milliseconds per host, peak MiB, per-host time against the smallest
size (growth), and the fabric inventory against the static one (plugin overhead).

    .venv/bin/python bench/fabric_scale.py [--sizes 5x10,10x20,20x40,50x40] [--timeout 600]
        [--list-max 300]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
COLLECTIONS = ROOT / ".collections"
MAX_RACKS = 200  # 198.18.1.0/24 .. 198.18.200.0/24
MAX_PER_RACK = 200


def fabric(racks: int, per_rack: int) -> dict[str, Any]:
    """A fabric file's data: every rack a /24 in 198.18.0.0/16, loopbacks and links in 198.19."""
    controls = max(2, racks // 10)
    rack_names = [f"r{i}" for i in range(1, racks + 1)]
    hosts: dict[str, dict[str, Any]] = {}
    for i in range(3):
        hosts[f"ctl{i + 1}"] = {
            "rack": rack_names[i % racks],
            "roles": ["controller", "database", "messaging"],
        }
    for i in range(controls):
        # Spread over the racks, so two control nodes never share one when there are two.
        hosts[f"con{i + 1}"] = {"rack": rack_names[i * racks // controls], "roles": ["control"]}
    hosts["ana1"] = {"rack": rack_names[-1], "roles": ["analytics"]}
    for r, name in enumerate(rack_names, start=1):
        for c in range(1, per_rack + 1):
            hosts[f"cmp{r}-{c}"] = {"rack": name, "roles": ["compute"]}
    return {
        "plugin": "vrstack.cloud.fabric",
        "cluster": {
            "name": "bench",
            "asn": 64512,
            "ha": True,
            "loopback_pool": "198.19.0.0/18",
            "vips": {"internal": "198.18.1.10"},
        },
        "spine": {"name": "spine", "asn": 64600, "link_pool": "198.19.64.0/22"},
        "gateway": {
            "name": "edge",
            "address": "198.19.96.1",
            "asn": 64700,
            "route_target": 9000,
            "routed_networks": ["198.19.128.0/24"],
        },
        "racks": {
            name: {
                "subnet": f"198.18.{r}.0/24",
                "gateway": f"198.18.{r}.1",
                "tor_asn": 65000 + r,
                "reserved": 15,
            }
            for r, name in enumerate(rack_names, start=1)
        },
        "hosts": hosts,
        "vars": {"ansible_user": "root"},
    }


def static_inventory(data: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """The same groups and vars as the plugin yields, as a plain YAML inventory."""
    from ansible_collections.vrstack.cloud.plugins.plugin_utils.fabric import groups, host_vars

    children: dict[str, Any] = {}
    for group, members in groups(model).items():
        children[group] = {"hosts": {h: None for h in members}}
    children["vrstack"]["hosts"] = {h: host_vars(model, h) for h in model["hosts"]}
    return {"all": {"vars": {"vrstack_fabric": model, **data["vars"]}, "children": children}}


# ---- measurements, each in its own child process ------------------------------------------


def child_model(path: str) -> dict[str, float]:
    from ansible_collections.vrstack.cloud.plugins.plugin_utils.fabric import (
        build_model,
        groups,
        host_vars,
    )

    data = yaml.safe_load(Path(path).read_text())
    start = time.process_time()
    model = build_model(data, path)
    built = time.process_time()
    for host in model["hosts"]:
        host_vars(model, host)
    groups(model)
    return {"build": built - start, "total": time.process_time() - start}


def child_vars(path: str) -> dict[str, float]:
    from ansible.inventory.manager import InventoryManager
    from ansible.parsing.dataloader import DataLoader
    from ansible.vars.manager import VariableManager

    loader = DataLoader()
    start = time.process_time()
    inventory = InventoryManager(loader=loader, sources=[path])
    parsed = time.process_time()
    manager = VariableManager(loader=loader, inventory=inventory)
    hosts = inventory.get_hosts()
    for host in hosts:
        manager.get_vars(host=host, include_hostvars=False)
    done = time.process_time()
    if len(hosts) < 2:
        raise SystemExit(f"{path}: parsed to {len(hosts)} hosts")
    return {"parse": parsed - start, "total": done - start, "hosts": len(hosts)}


def run_child(
    argv: list[str], timeout: float, cwd: Path = ROOT, save: Path | None = None
) -> tuple[float, float, str]:
    """(CPU seconds, peak MiB, stdout) of one child process, killed after `timeout`.
    CPU time rather than wall time: other work on the machine does not count.
    With `save`, stdout goes to that file and is not read here: Linux starts a child's
    peak memory at its parent's size, so this process must stay small."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(COLLECTIONS)
    with (
        open(save, "w+") if save else tempfile.TemporaryFile("w+") as out,
        tempfile.TemporaryFile("w+") as err,
    ):
        start = time.perf_counter()
        proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=out, stderr=err)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise SystemExit(f"timed out after {timeout:.0f}s: {' '.join(argv[:4])}")
            time.sleep(0.02)
        cpu = usage.ru_utime + usage.ru_stime
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv[:4])} failed:\n{err.read()[-3000:]}")
        return cpu, usage.ru_maxrss / 1024, "" if save else out.read()


def child_count(path: str) -> dict[str, int]:
    """How many hosts an `ansible-inventory --list` output holds."""
    return {"hosts": len(json.loads(Path(path).read_text())["_meta"]["hostvars"])}


def child_generate(size: str) -> dict[str, Any]:
    """Write both inventories of one size under the working directory (in a child, so
    the parent stays small: Linux carries a parent's peak memory into its children)."""
    from ansible_collections.vrstack.cloud.plugins.plugin_utils.fabric import build_model

    racks, per_rack = parse_sizes(size)[0]
    data = fabric(racks, per_rack)
    Path("fabric").mkdir()
    Path("static").mkdir()
    fabric_file = Path("fabric", "fabric.yml")
    fabric_file.write_text(yaml.safe_dump(data, sort_keys=False))
    model = build_model(data, str(fabric_file))
    Path("static", "hosts.yml").write_text(
        yaml.dump(static_inventory(data, model), Dumper=yaml.CSafeDumper, sort_keys=False)
    )
    return {"hosts": len(data["hosts"])}


def measure(
    racks: int, per_rack: int, workdir: Path, timeout: float, list_max: int
) -> dict[str, Any]:
    size = f"{racks}x{per_rack}"
    site = workdir / size
    site.mkdir()
    me = [sys.executable, str(Path(__file__).resolve())]
    _, _, out = run_child([*me, "--child", "generate", size], timeout, cwd=site)
    fabric_file = site / "fabric" / "fabric.yml"
    static_file = site / "static" / "hosts.yml"
    cli = str(Path(sys.executable).with_name("ansible-inventory"))
    row: dict[str, Any] = {"size": size, "hosts": json.loads(out)["hosts"]}
    _, rss, out = run_child([*me, "--child", "model", str(fabric_file)], timeout)
    row["model"] = {**json.loads(out), "rss": rss}
    for kind, path in (("fabric", fabric_file), ("static", static_file)):
        listed = site / f"{kind}.json"
        cpu, rss, _ = run_child([cli, "-i", str(path), "--list", "--export"], timeout, save=listed)
        _, _, out = run_child([*me, "--child", "count", str(listed)], timeout)
        if json.loads(out)["hosts"] != row["hosts"]:
            raise SystemExit(f"{path}: ansible-inventory listed the wrong number of hosts")
        row[f"cli_{kind}"] = {"total": cpu, "rss": rss}
        _, rss, out = run_child([*me, "--child", "vars", str(path)], timeout)
        row[f"vars_{kind}"] = {**json.loads(out), "rss": rss}
    if row["hosts"] <= list_max:
        listed = site / "list.json"
        cpu, rss, _ = run_child([cli, "-i", str(fabric_file), "--list"], timeout, save=listed)
        row["list"] = {"total": cpu, "rss": rss, "mib_out": listed.stat().st_size / 2**20}
        listed.unlink()
    return row


def report(rows: list[dict[str, Any]]) -> None:
    base = rows[0]
    cols = [
        ("model", "model (in-process)"),
        ("cli_fabric", "ansible-inventory, fabric"),
        ("cli_static", "ansible-inventory, static YAML"),
        ("vars_fabric", "parse + get_vars, fabric"),
        ("vars_static", "parse + get_vars, static YAML"),
    ]
    for key, title in cols:
        print(f"\n{title}")
        print(
            f"  {'size':>7} {'hosts':>6} {'s':>8} {'ms/host':>8} {'growth':>7} {'MiB':>7}", end=""
        )
        print(f" {'vs static':>9}" if key.endswith("fabric") else "")
        for row in rows:
            fig = row[key]
            per_host = fig["total"] * 1000 / row["hosts"]
            growth = per_host / (base[key]["total"] * 1000 / base["hosts"])
            line = (
                f"  {row['size']:>7} {row['hosts']:>6} {fig['total']:8.2f} {per_host:8.3f} "
                f"{growth:6.2f}x {fig['rss']:7.0f}"
            )
            if key.endswith("fabric"):
                static = row[key.replace("fabric", "static")]
                line += f" {fig['total'] / static['total']:8.2f}x"
            print(line)
    print("\nansible-inventory --list (no --export), fabric")
    print(f"  {'size':>7} {'hosts':>6} {'s':>8} {'MiB':>7} {'MiB out':>8} {'us/host^2':>9}")
    for row in rows:
        fig = row.get("list")
        if fig is None:
            print(f"  {row['size']:>7} {row['hosts']:>6}  skipped (more than --list-max hosts)")
            continue
        print(
            f"  {row['size']:>7} {row['hosts']:>6} {fig['total']:8.2f} {fig['rss']:7.0f} "
            f"{fig['mib_out']:8.1f} {fig['total'] / row['hosts'] ** 2 * 1e6:9.2f}"
        )
    print("\ngrowth: ms per host against the smallest size; vs static: time against the")
    print("static YAML inventory with the same groups and vars, in the same run")


def parse_sizes(text: str) -> list[tuple[int, int]]:
    sizes = []
    for part in text.split(","):
        racks, _, per_rack = part.partition("x")
        r, c = int(racks), int(per_rack)
        if not (3 <= r <= MAX_RACKS and 1 <= c <= MAX_PER_RACK):
            raise SystemExit(f"size {part}: racks 3-{MAX_RACKS}, computes 1-{MAX_PER_RACK}")
        sizes.append((r, c))
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="5x10,10x20,20x40,50x40", help="RACKSxCOMPUTES,...")
    parser.add_argument(
        "--list-max", type=int, default=300, help="largest host count for --list without --export"
    )
    parser.add_argument("--timeout", type=float, default=600, help="seconds per measurement")
    parser.add_argument("--child", nargs=2, metavar=("KIND", "PATH"), help=argparse.SUPPRESS)
    args = parser.parse_args()

    from ansible.plugins.loader import init_plugin_loader

    init_plugin_loader([str(COLLECTIONS)])
    if args.child:
        kind, path = args.child
        child = {
            "model": child_model,
            "vars": child_vars,
            "generate": child_generate,
            "count": child_count,
        }[kind]
        print(json.dumps(child(path)))
        return
    rows = []
    with tempfile.TemporaryDirectory(prefix="fabric-scale-") as tmp:
        for racks, per_rack in parse_sizes(args.sizes):
            started = time.perf_counter()
            rows.append(measure(racks, per_rack, Path(tmp), args.timeout, args.list_max))
            print(
                f"measured {racks}x{per_rack} ({rows[-1]['hosts']} hosts) in "
                f"{time.perf_counter() - started:.0f}s",
                file=sys.stderr,
            )
    report(rows)


if __name__ == "__main__":
    main()
