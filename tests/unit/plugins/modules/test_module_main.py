"""Every module's main() run as Ansible runs it (a program given its arguments as JSON),
against real neighbours on loopback: what it returns on success, how it fails (the
message names the module and the bad part), check mode, and `diff` only in diff mode."""

from __future__ import annotations

import grp
import hashlib
import json
import os
import pwd
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[4]
SDN_SRC = ROOT / "files" / "sdn-src"
sys.path.insert(0, str(SDN_SRC))
import vrstack_apis as apis  # noqa: E402

from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, free_port  # noqa: E402


def run(
    tmp_path: Path, module: str, args: dict[str, Any], check: bool = False, diff: bool = False
) -> tuple[int, dict[str, Any]]:
    """The module's exit code and result (without `invocation`, which echoes the args)."""
    args_file = tmp_path / f"{module}-args.json"
    flags = {"_ansible_check_mode": check, "_ansible_diff": diff}
    args_file.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": {**args, **flags}}))
    env = {**os.environ, "PYTHONPATH": str(ROOT / ".collections")}
    program = f"ansible_collections.vrstack.cloud.plugins.modules.{module}"
    proc = subprocess.run(
        [sys.executable, "-m", program, str(args_file)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    result = json.loads(proc.stdout)
    result.pop("invocation", None)
    return proc.returncode, result


@pytest.fixture(scope="module")
def config_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with apis.config_api(tmp_path_factory.mktemp("api")) as d:
        yield d.url


@pytest.fixture(scope="module")
def collector(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with apis.collector(tmp_path_factory.mktemp("collector")) as d:
        yield d.url


def test_analytics_query(tmp_path: Path, collector: str) -> None:
    ask = {"url": collector, "token": READER_TOKEN, "table": "logs", "since": "-1h"}
    rc, got = run(tmp_path, "analytics_query", ask, check=True, diff=True)
    took = got.pop("took_ms")  # varies from run to run
    assert isinstance(took, float) and took >= 0
    assert (rc, got) == (0, {"changed": False, "items": [], "count": 0, "next": None, "pages": 1})
    bad = {**ask, "table": "flows", "where": [{"field": "src_ip", "op": "in", "value": "x"}]}
    rc, got = run(tmp_path, "analytics_query", bad)
    assert (rc, got["failed"], got["field"], got["status"]) == (1, True, "where[0].value", 400)
    assert got["msg"].startswith("analytics_query: POST /query: 400: ")
    assert got["msg"].endswith("(field where[0].value)")
    # Refused before any request: no field or status in the result.
    assert run(tmp_path, "analytics_query", {**ask, "max_pages": 0}) == (
        1,
        {"failed": True, "msg": "analytics_query: max_pages: between 1 and 1000"},
    )
    url = f"http://127.0.0.1:{free_port()}"
    rc, got = run(tmp_path, "analytics_query", {**ask, "url": url})
    assert (rc, got["field"], got["status"]) == (1, "", 0)
    assert got["msg"].startswith(f"analytics_query: cannot reach the analytics API at {url}: ")


def test_sdn_status(tmp_path: Path) -> None:
    prog = tmp_path / "vrstack-status"
    body = {"node": "n1", "ok": False, "not_active": ["x"], "datapath": {}, "services": []}
    prog.write_text(f"#!/bin/sh\necho '{json.dumps(body)}'\nexit 1\n")
    prog.chmod(0o755)
    assert run(tmp_path, "sdn_status", {"command": str(prog)}, check=True, diff=True) == (
        0,
        {"changed": False, **body},
    )
    missing = str(tmp_path / "nothere")
    rc, got = run(tmp_path, "sdn_status", {"command": missing})
    assert (rc, set(got)) == (1, {"failed", "msg"})
    assert got["msg"].startswith(f"sdn_status: {missing} is not installed: ")
    assert run(tmp_path, "sdn_status", {"command": str(prog), "timeout": 0}) == (
        1,
        {"failed": True, "msg": "sdn_status: timeout: between 1 and 60 seconds"},
    )


def test_vrouter_agent_info_fails_naming_the_agent(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    rc, got = run(tmp_path, "vrouter_agent_info", {"url": url, "timeout": 2})
    assert (rc, set(got), got["status"]) == (1, {"failed", "msg", "status"}, 0)
    assert got["msg"].startswith(f"vrouter_agent_info: cannot reach the vrouter agent at {url}: ")


def test_sdn_resource(tmp_path: Path, config_api: str) -> None:
    args = {"url": config_api, "token": ADMIN_TOKEN, "type": "virtual-router", "name": "cmp1"}
    args["fields"] = {"fabric_address": "198.18.2.11"}
    rc, got = run(tmp_path, "sdn_resource", args, check=True, diff=True)
    assert (rc, got) == (
        0,
        {
            "changed": True,
            "action": "create",
            "uuid": None,
            "object": None,
            "changed_fields": ["fabric_address"],
            "diff": {"before": {}, "after": {"fabric_address": "198.18.2.11"}},
        },
    )
    rc, got = run(tmp_path, "sdn_resource", args)
    assert (rc, got["changed"], got["action"], "diff" in got) == (0, True, "create", False)
    again = run(tmp_path, "sdn_resource", args, diff=True)[1]
    assert (again["changed"], again["uuid"], again["diff"]) == (
        False,
        got["uuid"],
        {"before": {}, "after": {}},
    )
    rc, got = run(tmp_path, "sdn_resource", {**args, "fields": {"uuid": "x"}})
    assert (rc, got["field"], set(got)) == (1, "fields", {"failed", "msg", "field"})
    assert got["msg"].startswith("sdn_resource: virtual-router cmp1: fields: uuid cannot be set")


def test_sdn_wheel(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "demo_pkg").mkdir(parents=True)
    (src / "demo_pkg" / "__init__.py").write_text("")
    (src / "pyproject.toml").write_text('[project]\nname = "demo-pkg"\nversion = "1.0"\n')
    rc, got = run(tmp_path, "sdn_wheel", {"src": str(src), "dest": str(tmp_path / "w")}, True, True)
    assert (rc, got["changed"], "diff" in got) == (0, True, False)
    assert got["version"].startswith("1.0+src") and got["path"].startswith(str(tmp_path / "w"))
    assert not (tmp_path / "w").exists()  # check mode builds nothing
    rc, got = run(tmp_path, "sdn_wheel", {"src": str(tmp_path / "none"), "dest": "/tmp"})
    assert (rc, set(got)) == (1, {"failed", "msg"})
    assert got["msg"].startswith("sdn_wheel: ")


def test_vrouter_kmod(tmp_path: Path) -> None:
    # A module name that is not loaded: nothing to unload, in check mode nothing written.
    gone = {"name": "vrstacktestnone", "state": "absent"}
    base = {"changed": False, "built": False, "loaded": False, "unloaded": False}
    base |= {"method": None, "kernel": os.uname().release, "digest": None, "params": {}}
    base |= {"actions": []}
    assert run(tmp_path, "vrouter_kmod", gone, check=True) == (0, base)
    assert run(tmp_path, "vrouter_kmod", gone, check=True, diff=True) == (
        0,
        {**base, "diff": {"before": {"loaded": False}, "after": {"loaded": False}}},
    )
    kernel = "0.0-vrstack-none"
    args = {**gone, "state": "present", "src": str(tmp_path), "kernel": kernel}
    assert run(tmp_path, "vrouter_kmod", args, check=True) == (
        1,
        {
            "failed": True,
            "msg": f"vrouter_kmod: kernel headers for {kernel} not found in "
            f"/lib/modules/{kernel}/build: install the package linux-headers-{kernel}",
        },
    )
    assert run(tmp_path, "vrouter_kmod", {**args, "params": {"a-b": 1}}, check=True) == (
        1,
        {"failed": True, "msg": "vrouter_kmod: params: 'a-b' is not a module parameter name"},
    )


def test_secret_rotate(tmp_path: Path) -> None:
    store = tmp_path / "store" / "secrets.yml"
    store.parent.mkdir(mode=0o700)
    old = {"glance_db_password": "a" * 32, "rabbitmq_nova_password": "b" * 32, "other": "c" * 32}
    store.write_text("".join(f"{k}: {v}\n" for k, v in old.items()))
    store.chmod(0o600)
    ask = {"file": str(store), "names": ["glance_db_password"], "patterns": ["rabbitmq_.+"]}
    rotated = ["glance_db_password", "rabbitmq_nova_password"]
    # Check mode names what would change and writes nothing; no value is ever returned.
    assert run(tmp_path, "secret_rotate", ask, check=True) == (
        0,
        {"changed": True, "rotated": rotated, "file": str(store)},
    )
    assert store.read_text() == "".join(f"{k}: {v}\n" for k, v in old.items())
    rc, got = run(tmp_path, "secret_rotate", ask)
    assert (rc, got) == (0, {"changed": True, "rotated": rotated, "file": str(store)})
    new = yaml.safe_load(store.read_text())
    assert new["other"] == old["other"]
    assert all(new[n] != old[n] for n in rotated)
    assert not any(v in json.dumps(got) for v in new.values())
    # Nothing asked: nothing changes.
    nothing = {"file": str(store)}
    assert run(tmp_path, "secret_rotate", nothing) == (
        0,
        {"changed": False, "rotated": [], "file": str(store)},
    )
    assert run(tmp_path, "secret_rotate", {**nothing, "names": ["missing_one"]}) == (
        1,
        {"failed": True, "msg": f"secret_rotate: {store}: no secret named missing_one to rotate "
         "(a deploy makes them; rotating one that was never used would change nothing that reads it)"},
    )  # fmt: skip


def test_secret_rotate_with_an_overlap(tmp_path: Path) -> None:
    store = tmp_path / "store" / "secrets.yml"
    store.parent.mkdir(mode=0o700)
    old = {"sdn_api_admin_token": "a" * 32, "sdn_api_reader_token": "b" * 32}
    store.write_text("".join(f"{k}: {v}\n" for k, v in old.items()))
    store.chmod(0o600)
    ask = {"file": str(store), "patterns": ["sdn_api_[a-z]+_token"], "overlap": True}
    both = ["sdn_api_admin_token", "sdn_api_reader_token"]
    staged = {"changed": True, "rotated": both, "file": str(store), "staged": both, "previous": []}
    assert run(tmp_path, "secret_rotate", ask, check=True) == (0, staged)
    assert yaml.safe_load(store.read_text()) == old
    assert run(tmp_path, "secret_rotate", ask) == (0, staged)
    new = yaml.safe_load(store.read_text())
    assert {n: new[n] for n in both} == old and all(new[n + "_next"] != old[n] for n in both)
    # Asked again before the promotion: the same rotation goes on, nothing new.
    assert run(tmp_path, "secret_rotate", ask) == (0, {**staged, "changed": False, "rotated": []})
    assert yaml.safe_load(store.read_text()) == new
    promote = {"file": str(store), "promote": both}
    done = {"changed": True, "rotated": [], "file": str(store), "promoted": both}
    assert run(tmp_path, "secret_rotate", promote) == (0, done)
    now = yaml.safe_load(store.read_text())
    assert {n: now[n] for n in both} == {n: new[n + "_next"] for n in both}
    assert {n: now[n + "_previous"] for n in both} == old
    waiting = {"changed": False, "rotated": [], "file": str(store), "staged": [], "previous": both}
    assert run(tmp_path, "secret_rotate", ask) == (0, waiting)
    forget = {"file": str(store), "forget_previous": both}
    gone = {"changed": True, "rotated": [], "file": str(store), "forgotten": both}
    assert run(tmp_path, "secret_rotate", forget) == (0, gone)
    assert yaml.safe_load(store.read_text()) == {n: now[n] for n in both}
    assert not any(v in store.read_text() for v in old.values())


def test_secret_rotate_two_users_in_turn(tmp_path: Path) -> None:
    """The SDN's Keystone user: the standby user's password, the switch, then the user
    left behind gets a new one (playbooks/rotate-secrets.yml, rotate=sdn_keystone)."""
    store = tmp_path / "store" / "secrets.yml"
    store.parent.mkdir(mode=0o700)
    old = {"sdn_keystone_password": "a" * 32, "other": "c" * 32}
    store.write_text("".join(f"{k}: {v}\n" for k, v in old.items()))
    store.chmod(0o600)
    name = "sdn_keystone_password"
    stage = {"file": str(store), "alternate": [name]}
    staged = {"changed": True, "rotated": [], "file": str(store), "standby": {name: "b"}}
    assert run(tmp_path, "secret_rotate", stage, check=True) == (0, staged)
    assert yaml.safe_load(store.read_text()) == old
    assert run(tmp_path, "secret_rotate", stage) == (0, staged)
    first = yaml.safe_load(store.read_text())
    assert first == {**old, name + "_b": first[name + "_b"]} and first[name + "_b"] != old[name]
    # The services switched to b: recorded, and a's user (left behind) gets a new password.
    switch = {"file": str(store), "activate": {name: "b"}, "alternate": [name]}
    switched = {"changed": True, "rotated": [], "file": str(store), "activated": [name],
                "standby": {name: "a"}}  # fmt: skip
    assert run(tmp_path, "secret_rotate", switch, check=True) == (
        0,
        {**switched, "standby": {name: "b"}},  # check mode reads the file as it is
    )
    assert yaml.safe_load(store.read_text()) == first
    assert run(tmp_path, "secret_rotate", switch) == (0, switched)
    after = yaml.safe_load(store.read_text())
    assert after[name + "_active"] == "b" and after[name + "_b"] == first[name + "_b"]
    assert after[name] not in (old[name], first[name + "_b"]) and after["other"] == old["other"]
    # Recording the same switch again changes nothing.
    again = {"file": str(store), "activate": {name: "b"}}
    assert run(tmp_path, "secret_rotate", again) == (
        0,
        {"changed": False, "rotated": [], "file": str(store), "activated": []},
    )
    assert not any(v in store.read_text() for v in (old[name], first[name]) if v != after[name])
    bad = {"file": str(store), "activate": {name: "c"}}
    rc, got = run(tmp_path, "secret_rotate", bad)
    assert rc == 1 and "must be a or b" in str(got["msg"])
    assert yaml.safe_load(store.read_text()) == after


def test_pki_service(tmp_path: Path) -> None:
    """Against this host's user and group databases: the user's primary group counts as
    membership (nothing changes), a missing certificate and group only fail outside check
    mode."""
    me = pwd.getpwuid(os.getuid())
    primary = grp.getgrgid(me.pw_gid).gr_name
    cert = b"node certificate\n"
    (tmp_path / "node.crt").write_bytes(cert)
    args = {"user": me.pw_name, "group": primary, "dir": str(tmp_path)}
    rc, got = run(tmp_path, "pki_service", args, diff=True)
    assert (rc, got["changed"], got["stat"]) == (
        0,
        False,
        {
            "exists": True,
            "path": str(tmp_path / "node.crt"),
            "checksum": hashlib.sha256(cert).hexdigest(),
        },
    )
    assert "diff" not in got
    missing = {"user": me.pw_name, "group": "vrstack-no-such-group", "dir": str(tmp_path / "none")}
    rc, got = run(tmp_path, "pki_service", missing, check=True)
    assert (rc, got["changed"], got["group_exists"], got["stat"]["exists"]) == (
        0,
        False,
        False,
        False,
    )
    rc, got = run(tmp_path, "pki_service", missing)
    assert (rc, got["failed"]) == (1, True)
    assert got["msg"].startswith(f"pki_service: {me.pw_name} needs {tmp_path}/none/node.crt ")


def test_mariadb_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a stand-in mysql client on PATH that keeps the SQL it was given and answers
    as the real one would: ok, a change, or an error that quotes the password."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    client = bin_dir / "mysql"
    client.write_text(
        '#!/bin/sh\necho "$@" > "$0.args"\ncat > "$0.sql"\n'
        'if [ -e "$0.fail" ]; then echo "ERROR near \'s3cret\'" >&2; exit 1; fi\n'
        'cat "$0.answer"\n'
    )
    client.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    args = {"name": "glance", "user": "glance", "password": "s3cret", "tls": True}
    (bin_dir / "mysql.answer").write_text("ok\n")
    assert run(tmp_path, "mariadb_database", args) == (
        0,
        {"changed": False, "what": [], "msg": "glance: ok"},
    )
    assert (bin_dir / "mysql.args").read_text() == "--batch --skip-column-names --user=root\n"
    assert (
        "CREATE USER 'glance'@'%' IDENTIFIED BY 's3cret' REQUIRE SSL;"
        in (bin_dir / "mysql.sql").read_text()
    )
    # Check mode with the server there: the reads only.
    (bin_dir / "mysql.answer").write_text("changed: password\n")
    socket = tmp_path / "mysqld.sock"
    socket.touch()
    rc, got = run(tmp_path, "mariadb_database", {**args, "socket": str(socket)}, check=True)
    assert (rc, got["changed"], got["what"]) == (0, True, ["password"])
    assert "ALTER USER" not in (bin_dir / "mysql.sql").read_text()
    # Check mode before the server is installed: nothing run.
    (bin_dir / "mysql.sql").unlink()
    rc, got = run(
        tmp_path, "mariadb_database", {**args, "socket": str(tmp_path / "no")}, check=True
    )
    assert (rc, got["msg"], (bin_dir / "mysql.sql").exists()) == (
        0,
        "glance: would be created with MariaDB",
        False,
    )
    (bin_dir / "mysql.fail").touch()
    rc, got = run(tmp_path, "mariadb_database", args)
    assert (rc, got["failed"]) == (1, True)
    assert "s3cret" not in json.dumps(got)
    assert got["msg"].startswith("mariadb_database: glance: mysql failed (rc 1): ERROR near '")


def test_service_probe(tmp_path: Path) -> None:
    """A server that greets first (like MariaDB): the reply, never a change; a closed port
    fails naming the service and the address."""
    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def greet() -> None:
        conn, _addr = srv.accept()
        with conn:
            conn.sendall(b"\x0a10.11.6-MariaDB-0+deb12u1\x00")

    threading.Thread(target=greet, daemon=True).start()
    args = {"service": "mariadb", "host": "127.0.0.1", "port": port, "expect": "MariaDB"}
    assert run(tmp_path, "service_probe", args, check=True) == (
        0,
        {"changed": False, "reply": "MariaDB"},
    )
    srv.close()
    rc, got = run(tmp_path, "service_probe", args)
    assert (rc, got["failed"]) == (1, True)
    assert got["msg"].startswith(f"service_probe mariadb: 127.0.0.1:{port}: ")
