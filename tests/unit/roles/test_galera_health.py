"""haproxy sends database connections only to a Synced Galera node (issue 7, HA part):
the responder's decision (roles/mariadb/files/galera_health.py) fed fake wsrep values and
a fake `mysql`, and the haproxy, firewall and mariadb files as the roles render them for
the ha-lab (three database nodes) and the lab (one; nothing changes there)."""

from __future__ import annotations

import importlib.util
import io
import os
import stat
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as tls
from test_infra_tls_render import ROOT, Render

SCRIPT = ROOT / "roles" / "mariadb" / "files" / "galera_health.py"
HA_INV = ROOT / "inventories" / "ha-lab"


def _load() -> ModuleType:
    spec = importlib.util.spec_from_file_location("galera_health", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gh = _load()

SYNCED = {"wsrep_local_state": "4", "wsrep_cluster_status": "Primary", "wsrep_ready": "ON"}


# ---- the decision ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "ok", "reason"),
    [
        (SYNCED, True, "Synced"),
        ({}, False, "no Galera status"),
        (SYNCED | {"wsrep_local_state": "2"}, False, "local state 2"),  # donor
        (SYNCED | {"wsrep_local_state": "1"}, False, "local state 1"),  # joining
        (SYNCED | {"wsrep_local_state": "3"}, False, "local state 3"),  # joined, catching up
        (SYNCED | {"wsrep_cluster_status": "non-Primary"}, False, "non-Primary"),
        (SYNCED | {"wsrep_cluster_status": "Disconnected"}, False, "Disconnected"),
        (SYNCED | {"wsrep_ready": "OFF"}, False, "wsrep_ready OFF"),
        ({"wsrep_cluster_status": "Primary", "wsrep_ready": "ON"}, False, "local state ?"),
    ],
)
def test_only_synced_primary_and_ready_is_healthy(
    status: dict[str, str], ok: bool, reason: str
) -> None:
    got_ok, got_reason = gh.decide(status)
    assert got_ok is ok
    assert reason in got_reason


def test_parse_reads_mysql_batch_output() -> None:
    out = "wsrep_cluster_status\tPrimary\nwsrep_local_state\t4\nWSREP_READY\tON\n\n"
    assert gh.parse(out) == SYNCED
    assert gh.parse("ERROR 2002 (HY000): Can't connect\n") == {}


def test_response_is_http_with_the_status_and_length() -> None:
    ok = gh.response(True, "Synced, Primary")
    assert ok.startswith(b"HTTP/1.1 200 OK\r\n")
    head, body = ok.split(b"\r\n\r\n", 1)
    assert f"Content-Length: {len(body)}".encode() in head and body == b"Synced, Primary\n"
    assert gh.response(False, "x").startswith(b"HTTP/1.1 503 Service Unavailable\r\n")


def test_request_head_is_read_up_to_the_blank_line_only() -> None:
    stream = io.BytesIO(b"GET / HTTP/1.0\r\nHost: x\r\n\r\nleft")
    gh.read_request(stream)
    assert stream.read() == b"left"
    gh.read_request(io.BytesIO(b""))  # haproxy closing early: no hang, no error


@pytest.mark.parametrize(
    ("state", "ok"),
    [("deactivating", False), ("inactive", False), ("failed", False), ("active", True),
     ("reloading", True), ("", True)],
)  # fmt: skip
def test_systemd_state_overrides_a_synced_answer(
    monkeypatch: pytest.MonkeyPatch, state: str, ok: bool
) -> None:
    # "" is systemd not answering (no bus): wsrep alone decides then.
    monkeypatch.setattr(gh, "unit_state", lambda unit, timeout: state)
    monkeypatch.setattr(gh, "read_status", lambda timeout: SYNCED)
    got_ok, reason = gh.check("mariadb", 1.0)
    assert got_ok is ok
    assert (f"mariadb is {state}" in reason) is not ok


def test_a_stopping_server_is_not_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    asked: list[float] = []
    monkeypatch.setattr(gh, "unit_state", lambda unit, timeout: "deactivating")
    monkeypatch.setattr(gh, "read_status", lambda timeout: asked.append(timeout) or SYNCED)
    assert not gh.check("mariadb", 1.0)[0] and asked == []


# ---- the script with a fake mysql (and systemctl) on PATH -----------------------------------


def _fake_bin(tmp_path: Path, mysql: str, systemctl: str = "echo active") -> dict[str, str]:
    bindir = tmp_path / "bin"
    bindir.mkdir()
    for name, body in (("mysql", mysql), ("systemctl", systemctl)):
        path = bindir / name
        path.write_text("#!/bin/sh\n" + body + "\n")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return dict(os.environ, PATH=f"{bindir}:/usr/bin:/bin")


def _ask(env: dict[str, str], *args: str) -> tuple[bytes, float]:
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        input=b"GET / HTTP/1.1\r\nHost: ha\r\n\r\n",
        capture_output=True, env=env, timeout=20, check=True,
    )  # fmt: skip
    return done.stdout, time.monotonic() - started


PRINT = "printf 'wsrep_local_state\\t%s\\nwsrep_cluster_status\\t%s\\nwsrep_ready\\tON\\n'"


def test_script_answers_200_for_a_synced_node(tmp_path: Path) -> None:
    out, _secs = _ask(_fake_bin(tmp_path, f"{PRINT} 4 Primary"), "--unit", "mariadb")
    assert out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"Synced, Primary\n")


def test_script_answers_503_for_a_donor(tmp_path: Path) -> None:
    out, _secs = _ask(_fake_bin(tmp_path, f"{PRINT} 2 Primary"))
    assert out.startswith(b"HTTP/1.1 503") and b"local state 2" in out


def test_script_answers_503_when_mariadb_refuses(tmp_path: Path) -> None:
    env = _fake_bin(tmp_path, "echo 'ERROR 1045 (28000): Access denied' >&2; exit 1")
    out, _secs = _ask(env)
    assert out.startswith(b"HTTP/1.1 503") and b"no Galera status" in out


def test_script_answers_503_in_time_when_mariadb_hangs(tmp_path: Path) -> None:
    out, secs = _ask(_fake_bin(tmp_path, f"sleep 10; {PRINT} 4 Primary"), "--timeout", "0.5")
    assert out.startswith(b"HTTP/1.1 503")
    assert secs < 5, f"answered after {secs:.1f}s; haproxy's check gives up after 2s"


def test_script_answers_503_while_systemd_stops_mariadb(tmp_path: Path) -> None:
    # The server still answers Synced for a while after SIGTERM: systemd knows better.
    env = _fake_bin(tmp_path, f"{PRINT} 4 Primary", systemctl="echo deactivating; exit 3")
    out, _secs = _ask(env, "--unit", "mariadb")
    assert out.startswith(b"HTTP/1.1 503") and b"mariadb is deactivating" in out


def test_script_without_systemd_bus_decides_by_wsrep(tmp_path: Path) -> None:
    env = _fake_bin(
        tmp_path, f"{PRINT} 4 Primary", systemctl="echo 'Failed to connect to bus' >&2; exit 1"
    )
    out, _secs = _ask(env, "--unit", "mariadb")
    assert out.startswith(b"HTTP/1.1 200 OK")


# ---- haproxy ---------------------------------------------------------------------------------


def _render(host: str, roles: list[str], inventory: Path = HA_INV, **extra: Any) -> Render:
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tls, "LAB_INV", inventory)
        return Render(host, roles, **extra)


def _listen(cfg: str, name: str) -> list[str]:
    block = cfg.split(f"\nlisten {name}\n", 1)[1].split("\nlisten ", 1)[0]
    return [line.strip() for line in block.splitlines() if line.strip()]


HA_HOSTS = ["ha-ctl1", "ha-ctl2", "ha-ctl3"]


def _ip(host: str) -> str:
    return str(_render(host, ["haproxy"]).var("vrstack_fabric_ip"))


def _addresses(*hosts: str) -> list[str]:
    """Fabric and loopback addresses of `hosts` (a check may leave from either)."""
    out = []
    for host in hosts:
        r = _render(host, ["haproxy"])
        out += [str(r.var("vrstack_fabric_ip")), str(r.var("vrstack_loopback_ip"))]
    return out


def test_haproxy_checks_the_galera_responder_and_keeps_one_writer() -> None:
    cfg = _render("ha-ctl1", ["haproxy"]).template("haproxy", "haproxy.cfg.j2")
    db = _listen(cfg, "mariadb")
    assert "option httpchk" in db and "http-check expect status 200" in db
    assert "http-check send meth GET uri /" in db
    assert not any("mysql-check" in line for line in db)
    assert "default-server inter 1s fall 2 rise 3 on-marked-down shutdown-sessions" in db
    assert "timeout check 2s" in db
    servers = [line for line in db if line.startswith("server ")]
    assert servers == [
        f"server {h} {_ip(h)}:3306 check port 4569" + ("" if h == "ha-ctl1" else " backup")
        for h in HA_HOSTS
    ]
    # The APIs keep their own checks (no check port, no database timings).
    keystone = _listen(cfg, "keystone")
    assert not any("port 4569" in line or "shutdown-sessions" in line for line in keystone)


def test_haproxy_keeps_the_login_check_when_switched_off() -> None:
    for extra in ({"vrstack_galera_health_check": False}, {"haproxy_galera_check": False}):
        cfg = _render("ha-ctl1", ["haproxy"], **extra).template("haproxy", "haproxy.cfg.j2")
        db = _listen(cfg, "mariadb")
        assert "option mysql-check user haproxy_check post-41" in db, extra
        assert not any("httpchk" in line or "4569" in line for line in db), extra


def test_haproxy_keeps_the_login_check_without_galera() -> None:
    # Two database nodes: no Galera, so no responder to ask.
    cfg = _render(
        "ha-ctl1", ["haproxy"], groups={"database": HA_HOSTS[:2], "controller": HA_HOSTS}
    ).template("haproxy", "haproxy.cfg.j2")
    assert "option mysql-check user haproxy_check post-41" in _listen(cfg, "mariadb")


# ---- firewall ----------------------------------------------------------------------------------


def _rule(host: str, inventory: Path = HA_INV, **extra: Any) -> dict[str, Any] | None:
    rules = _render(host, ["firewall"], inventory, **extra).var("__firewall_rules")
    found = [rule for rule in rules if rule["name"] == "galera-health"]
    return found[0] if found else None


def test_firewall_opens_the_check_port_to_the_vip_controllers_only() -> None:
    vip = str(_render("ha-ctl1", ["firewall"]).var("vrstack_vips.internal"))
    for host in HA_HOSTS:
        rule = _rule(host)
        assert rule is not None, host
        assert rule["proto"] == "tcp" and rule["ports"] == ["4569"]
        # ha-ctl3 is in the other rack: it cannot hold the VIP and runs no haproxy.
        assert sorted(rule["v4"]) == sorted([*_addresses("ha-ctl1", "ha-ctl2"), vip]), rule
        assert rule["v6"] == []


def test_firewall_leaves_the_check_port_closed_when_off_or_single() -> None:
    assert _rule("ha-ctl1", vrstack_galera_health_check=False) is None
    assert _rule("ha-ctl1", mariadb_health_check=False) is None
    assert _rule("lab-ctl1", ROOT / "inventories" / "lab") is None


# ---- mariadb -------------------------------------------------------------------------------------


def test_mariadb_runs_the_responder_with_galera_only() -> None:
    assert _render("ha-ctl2", ["mariadb"]).var("__mariadb_health") is True
    assert (
        _render("ha-ctl2", ["mariadb"], vrstack_galera_health_check=False).var("__mariadb_health")
        is False
    )
    assert (
        _render("lab-ctl1", ["mariadb"], ROOT / "inventories" / "lab").var("__mariadb_health")
        is False
    )


def test_mariadb_socket_and_service_units() -> None:
    r = _render("ha-ctl2", ["mariadb"])
    socket = r.template("mariadb", "vrstack-galera-health.socket.j2")
    assert f"ListenStream={_ip('ha-ctl2')}:4569" in socket.splitlines()
    assert "Accept=yes" in socket.splitlines()
    service = r.template("mariadb", "vrstack-galera-health@.service.j2").splitlines()
    assert "User=galera_health" in service and "StandardInput=socket" in service
    assert (
        "ExecStart=/usr/bin/python3 /usr/local/libexec/vrstack/galera_health.py"
        " --unit mariadb --timeout 1.5"
    ) in service
    assert not any(line.startswith("#!") for line in socket.splitlines() + service)


def test_mariadb_freebsd_inetd_line() -> None:
    r = _render("ha-ctl2", ["mariadb"], vrstack_os="freebsd14")
    lines = [
        line
        for line in r.template("mariadb", "galera-health-inetd.conf.j2").splitlines()
        if line and not line.startswith("#")
    ]
    assert lines == [
        "vrstack-galera-health\tstream\ttcp\tnowait/32\tgalera_health\t/usr/local/bin/python3.11"
        "\tpython3.11 /usr/local/libexec/vrstack/galera_health.py --timeout 1.5"
    ]


def test_mariadb_health_login_is_unix_socket_without_rights() -> None:
    sql = _render("ha-ctl1", ["mariadb"], __mariadb_apply=True).template(
        "mariadb", "health_user.sql.j2"
    )
    assert "CREATE USER 'galera_health'@'localhost' IDENTIFIED VIA unix_socket;" in sql
    assert "GRANT" not in sql and "PASSWORD" not in sql.upper()
    dry = _render("ha-ctl1", ["mariadb"], __mariadb_apply=False).template(
        "mariadb", "health_user.sql.j2"
    )
    assert "CREATE USER" not in dry and "ALTER USER" not in dry
