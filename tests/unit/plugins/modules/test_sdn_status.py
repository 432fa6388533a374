"""sdn_status: the status code of the vrstack package (vrstack.status.node, which
`vrstack-status` prints) against real daemons' /health, with the init system faked
(the neighbour: which units exist and run); and the module's side (module_utils/
sdn_status.py) running the real `vrstack-status` program."""

from __future__ import annotations

import json
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils import sdn_status

SDN_SRC = Path(__file__).resolve().parents[4] / "files" / "sdn-src"
sys.path.insert(0, str(SDN_SRC))
from vrstack_apis import config_api  # noqa: E402

from vrstack.config.testing import Daemon, free_port  # noqa: E402
from vrstack.status import cli, node  # noqa: E402


class FakeInit:
    """The init system's answers (units installed/running, the kernel module); HTTP is real."""

    def __init__(self, units: dict[str, node.Unit], kmod: bool = False) -> None:
        self.units = units
        self.kmod = kmod
        self.local = node.LocalSystem()

    def unit(self, name: str) -> node.Unit:
        return self.units.get(name, node.Unit(False, False))

    def kmod_loaded(self) -> bool:
        return self.kmod

    def get(self, url: str, timeout: float) -> tuple[int, Any]:
        return self.local.get(url, timeout)


def write(path: Path, body: dict[str, Any]) -> str:
    path.write_text(json.dumps(body))  # JSON is YAML
    return str(path)


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, str]]:
    """A real vrstack-api on a known port, and its config file."""
    with config_api(tmp_path_factory.mktemp("api"), free_port()) as daemon:
        yield daemon, str(daemon.config_path)


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory, api: tuple[Daemon, str]) -> Iterator[str]:
    """A real vrstack-schema whose API token is wrong: it runs but is not healthy."""
    work = tmp_path_factory.mktemp("schema")
    config = {
        "api": {"url": api[0].url, "token": "not-a-token"},
        "listen": {"host": "127.0.0.1", "port": free_port()},
    }
    daemon = Daemon("vrstack.schema.main", config, work, "schema")
    daemon.start()
    try:
        yield str(daemon.config_path)
    finally:
        assert daemon.terminate() == 0


def test_every_state_of_a_controller_and_a_compute(
    api: tuple[Daemon, str], schema: str, tmp_path: Path
) -> None:
    agent_cfg = write(tmp_path / "agent.yaml", {"listen": {"port": free_port()}})  # nobody there
    system = FakeInit(
        {
            "vrstack-api": node.Unit(True, True, "active/running", api[1]),
            "vrstack-schema": node.Unit(True, True, "active/running", schema),
            "vrstack-control": node.Unit(True, False, "failed/failed (exit-code)"),
            "vrouterd": node.Unit(True, True, "active/running"),
            "vrstack-agent": node.Unit(True, True, "active/running", agent_cfg),
        }
    )
    status = node.collect(system, timeout=2)
    by = {s.name: s for s in status.services}
    # Units that are not installed (collector, vhost0) are not listed.
    assert list(by) == [
        "vrstack-api",
        "vrstack-schema",
        "vrstack-control",
        "vrouterd",
        "vrstack-agent",
    ]
    assert (by["vrstack-api"].state, by["vrstack-api"].reason) == ("active", "")
    assert by["vrstack-api"].health == f"{api[0].url}/health"
    assert by["vrstack-schema"].state == "initializing"
    assert by["vrstack-schema"].reason  # why: the API refuses its token
    assert (by["vrstack-control"].state, by["vrstack-control"].reason) == (
        "inactive",
        "failed/failed (exit-code)",
    )
    assert by["vrouterd"].state == "active"  # no /health: the running unit is enough
    assert by["vrstack-agent"].state == "initializing"
    assert "no answer on http://127.0.0.1:" in by["vrstack-agent"].reason
    assert status.datapath == {"mode": "user", "detail": "userspace vrouterd running"}
    result = status.as_dict()
    assert result["ok"] is False
    assert result["not_active"] == ["vrstack-schema", "vrstack-control", "vrstack-agent"]

    text = node.render(status)
    assert "datapath: user (userspace vrouterd running)" in text
    assert re.search(r"^vrstack-control +inactive \(failed/failed \(exit-code\)\)$", text, re.M)
    assert re.search(r"^vrstack-api +active$", text, re.M)


def test_kernel_datapath_and_all_active(api: tuple[Daemon, str]) -> None:
    system = FakeInit(
        {
            "vrstack-api": node.Unit(True, True, "active/running", api[1]),
            "vrouter-vhost0": node.Unit(True, True, "active/exited"),
        },
        kmod=True,
    )
    status = node.collect(system, timeout=2)
    assert status.ok and status.datapath["mode"] == "kernel"
    assert [s.state for s in status.services] == ["active", "active"]


def test_degraded_reasons_of_each_service() -> None:
    cases = [
        ("vrstack-agent", {"status": "degraded", "sessions_up": 0}, "no control node session up"),
        (
            "vrstack-control",
            {"status": "degraded", "config_connected": False, "bgp": "running"},
            "not connected to the config API",
        ),
        (
            "vrstack-control",
            {"status": "degraded", "config_connected": True, "bgp": "waiting for an AS number"},
            "bgp: waiting for an AS number",
        ),
        (
            "vrstack-collector",
            {"status": "degraded", "store_error": "disk full"},
            "store_error: disk full",
        ),
        (
            "vrstack-schema",
            {"status": "degraded", "connected": True, "last_error": "no asn"},
            "last_error: no asn",
        ),
    ]
    for name, body, reason in cases:
        assert node._degraded_reason(name, body) == reason, name


def test_backup_from_health_and_config_defaults(tmp_path: Path) -> None:
    known = next(k for k in node.KNOWN if k.name == "vrstack-collector")

    class Backup(FakeInit):
        def get(self, url: str, timeout: float) -> tuple[int, Any]:
            return 200, {"status": "ok", "role": "backup", "reason": "lab-ctl2 is active"}

    st = node.service_status(Backup({}), known, node.Unit(True, True, "", ""), 1)
    assert (st.state, st.reason) == ("backup", "lab-ctl2 is active")
    # No config file: the defaults of the role; a wildcard listen address is asked on loopback.
    assert node.health_url(known, str(tmp_path / "none.yaml")) == (
        "http://127.0.0.1:8081/health",
        "",
    )
    cfg = write(tmp_path / "c.yaml", {"listen": {"host": "0.0.0.0", "port": 9000}})
    assert node.health_url(known, cfg) == ("http://127.0.0.1:9000/health", "")


def test_cli_exit_codes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    down = node.NodeStatus("n1", {"mode": "none", "detail": "not a compute"})
    down.services.append(node.ServiceStatus("vrstack-api", "controller", "inactive", "stopped"))
    monkeypatch.setattr(cli, "collect", lambda timeout: down)
    assert cli.main(["--json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["not_active"] == ["vrstack-api"] and out["node"] == "n1"
    down.services[0].state = "active"
    assert cli.main([]) == 0
    assert "vrstack-api" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exc:
        cli.main(["--timeout", "0"])
    assert exc.value.code == 2


def program(tmp_path: Path, body: str) -> str:
    path = tmp_path / "vrstack-status"
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def run(argv: list[str]) -> tuple[int, str, str]:
    env = {**os.environ, "PYTHONPATH": str(SDN_SRC)}
    res = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60, check=False)
    return res.returncode, res.stdout, res.stderr


def test_module_runs_the_real_program(tmp_path: Path) -> None:
    # The package's entry point, as the venv's console script runs it, on this machine.
    real = program(tmp_path, f'exec {sys.executable} -m vrstack.status.cli "$@"')
    got = sdn_status.node_status(run, real, 2, os.path.exists)
    assert {"node", "ok", "services", "datapath", "not_active"} <= set(got)
    assert got["node"] == os.uname().nodename


def test_module_errors_are_clear(tmp_path: Path) -> None:
    missing = str(tmp_path / "nothere")
    with pytest.raises(sdn_status.StatusError, match=r"nothere is not installed: .*sdn_package"):
        sdn_status.node_status(run, missing, 2, os.path.exists)
    crash = program(tmp_path, "echo boom >&2; exit 3")
    with pytest.raises(sdn_status.StatusError, match=r"failed with exit 3: boom"):
        sdn_status.node_status(run, crash, 2, os.path.exists)
    garbage = program(tmp_path, "echo hello")
    with pytest.raises(sdn_status.StatusError, match=r"did not print JSON"):
        sdn_status.node_status(run, garbage, 2, os.path.exists)
    # Exit 1 (a service is not active) is an answer, not an error.
    one = program(tmp_path, """echo '{"services": [], "datapath": {}, "ok": false}'; exit 1""")
    assert sdn_status.node_status(run, one, 2, os.path.exists)["ok"] is False
