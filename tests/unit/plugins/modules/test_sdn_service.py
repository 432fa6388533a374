"""vrstack.cloud.sdn_service: the unit text it writes (the same bytes the role's templates
wrote), changed only when something differs, check mode, and a failing start that reports
the service manager's status and log lines. Commands and files are fakes: no host needed."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from test_module_main import run as run_module

from ansible_collections.vrstack.cloud.plugins.module_utils.sdn_service import (
    Files,
    SdnServiceError,
    ensure,
    fact_name,
    render_rc,
    render_unit,
)

ROOT = Path(__file__).resolve().parents[4]
GOLDEN = ROOT / "tests" / "freebsd" / "golden"
VENV = "/opt/vrstack/venv"
AGENT = {
    "name": "vrstack-agent",
    "description": "vrstack vrouter agent",
    "config": "/etc/vrstack/agent.yaml",
    "user": "vrouter",
    "group": "vrouter",
    "capabilities": ["CAP_NET_ADMIN"],
    "netlink": True,
    "read_write_paths": ["/var/lib/vrouter", "-/run/vrouter"],
    "part_of": ["vrouterd.service"],
    "after": ["vrouterd.service"],
}
UNIT = "/etc/systemd/system/vrstack-agent.service"


class FakeFiles(Files):
    """The host's files as a dict; a path in `bad_owner` has the wrong owner or mode."""

    def __init__(self, content: dict[str, str] | None = None) -> None:
        self.content = dict(content or {})
        self.bad_owner: set[str] = set()
        self.writes: list[tuple[str, int]] = []

    def read(self, path: str) -> str | None:  # type: ignore[override]
        return self.content.get(path)

    def write(self, path: str, text: str, mode: int) -> None:  # type: ignore[override]
        self.content[path] = text
        self.writes.append((path, mode))

    def needs_owner_fix(self, path: str, mode: int) -> bool:  # type: ignore[override]
        return path in self.bad_owner

    def fix_owner(self, path: str, mode: int) -> None:  # type: ignore[override]
        self.bad_owner.discard(path)
        self.writes.append((path, mode))


class FakeManager:
    """systemctl/sysrc/service: records the commands; `enabled`/`active` are its state."""

    def __init__(self, *, enabled: bool = False, active: bool = False, start_fails: bool = False):
        self.enabled, self.active, self.start_fails = enabled, active, start_fails
        self.ran: list[list[str]] = []

    def __call__(self, cmd: list[str]) -> tuple[int, str, str]:
        self.ran.append(cmd)
        verb = cmd[1] if cmd[0] in ("systemctl", "service") and len(cmd) > 2 else cmd[-1]
        if cmd[0] == "systemctl" and verb == "is-enabled":
            return (0, "enabled\n", "") if self.enabled else (1, "disabled\n", "")
        if cmd[0] == "systemctl" and verb == "is-active":
            return (0, "", "") if self.active else (3, "", "")
        if cmd[0] == "sysrc" and cmd[1] == "-n":
            return (0, "YES\n", "") if self.enabled else (1, "", "sysrc: unknown variable\n")
        if cmd[0] == "sysrc":
            self.enabled = True
            return 0, "", ""
        if cmd[0] == "service" and cmd[-1] == "status":
            return (0, "running as pid 7\n", "") if self.active else (1, "is not running.\n", "")
        if cmd[-1] == "start" or (cmd[0] == "systemctl" and cmd[1] == "start"):
            if self.start_fails:
                return 1, "", "Job for vrstack-agent.service failed.\n"
            self.active = True
            return 0, "", ""
        if cmd[0] == "systemctl" and cmd[1] == "enable":
            self.enabled = True
        if cmd[0] == "systemctl" and cmd[1] == "status":
            return 3, "Active: failed (Result: exit-code)\n", ""
        if cmd[0] == "journalctl":
            return 0, "vrstack-agent[42]: config: no such file /etc/vrstack/agent.yaml\n", ""
        if cmd[0] == "tail":
            return 0, "vrstack-agent[42]: config: no such file\n", ""
        return 0, "", ""


def call(
    files: FakeFiles,
    manager: FakeManager,
    *,
    check: bool = False,
    freebsd: bool = False,
    **spec: Any,
) -> dict[str, Any]:
    return ensure(
        {**AGENT, **spec}, venv=VENV, freebsd=freebsd, check_mode=check, run=manager, files=files
    )


def test_first_run_writes_the_unit_reloads_enables_and_starts() -> None:
    files, manager = FakeFiles(), FakeManager()
    got = call(files, manager)
    assert files.content[UNIT] == render_unit(AGENT, VENV) and files.writes == [(UNIT, 0o644)]
    assert [c[:2] for c in manager.ran] == [
        ["systemctl", "daemon-reload"],
        ["systemctl", "is-enabled"],
        ["systemctl", "enable"],
        ["systemctl", "is-active"],
        ["systemctl", "start"],
    ]
    assert (got["changed"], got["unit_changed"], got["enabled_changed"], got["started"]) == (
        True,
        True,
        True,
        True,
    )
    assert got["diff"]["before"] == "" and got["diff"]["after"] == files.content[UNIT]
    assert "ansible_facts" not in got


def test_a_second_run_changes_nothing_and_runs_only_the_two_reads() -> None:
    files = FakeFiles({UNIT: render_unit(AGENT, VENV)})
    manager = FakeManager(enabled=True, active=True)
    got = call(files, manager)
    assert got["changed"] is False and files.writes == []
    assert [c[:2] for c in manager.ran] == [["systemctl", "is-enabled"], ["systemctl", "is-active"]]


@pytest.mark.parametrize(
    ("change", "line"),
    [
        ({"capabilities": []}, "AmbientCapabilities="),
        ({"netlink": False}, "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6"),
        (
            {"config": "/etc/vrstack/other.yaml"},
            f"ExecStart={VENV}/bin/vrstack-agent --config /etc/vrstack/other.yaml",
        ),
        ({"supplementary_groups": ["vrouter-dp"]}, "SupplementaryGroups=vrouter-dp"),
    ],
)
def test_a_changed_option_rewrites_the_unit_and_reloads(change: dict[str, Any], line: str) -> None:
    files = FakeFiles({UNIT: render_unit(AGENT, VENV)})
    manager = FakeManager(enabled=True, active=True)
    got = call(files, manager, **change)
    assert got["changed"] and got["unit_changed"] and not got["started"]
    assert line in files.content[UNIT].splitlines()
    assert ["systemctl", "daemon-reload"] in manager.ran


def test_a_unit_with_the_wrong_mode_is_fixed_without_a_reload() -> None:
    files = FakeFiles({UNIT: render_unit(AGENT, VENV)})
    files.bad_owner.add(UNIT)
    manager = FakeManager(enabled=True, active=True)
    got = call(files, manager)
    assert got["changed"] and not got["unit_changed"] and files.writes == [(UNIT, 0o644)]
    assert ["systemctl", "daemon-reload"] not in manager.ran


def test_check_mode_on_a_fresh_host_reports_the_unit_and_notes_the_service() -> None:
    files, manager = FakeFiles(), FakeManager()
    got = call(files, manager, check=True)
    assert got["changed"] and got["unit_changed"] and files.content == {} and manager.ran == []
    # The restart handlers of the service roles skip a service with this fact.
    assert got["ansible_facts"] == {"__sdn_service_new_vrstack_agent": True}
    assert fact_name("vrstack-agent") == "__sdn_service_new_vrstack_agent"


def test_check_mode_reports_a_stopped_service_without_starting_it() -> None:
    files = FakeFiles({UNIT: render_unit(AGENT, VENV)})
    manager = FakeManager(enabled=True, active=False)
    got = call(files, manager, check=True)
    assert got["changed"] and got["started"] and not got["unit_changed"]
    assert [c[1] for c in manager.ran] == ["is-enabled", "is-active"]
    assert "ansible_facts" not in got


def test_a_failing_start_reports_the_status_and_the_journal() -> None:
    files = FakeFiles({UNIT: render_unit(AGENT, VENV)})
    manager = FakeManager(enabled=True, start_fails=True)
    with pytest.raises(SdnServiceError) as err:
        call(files, manager)
    text = str(err.value)
    assert text.startswith("systemctl start vrstack-agent.service failed with exit 1: Job for")
    assert "Active: failed (Result: exit-code)" in text
    assert "no such file /etc/vrstack/agent.yaml" in text


def test_freebsd_writes_the_rc_script_enables_with_sysrc_and_starts() -> None:
    files, manager = FakeFiles(), FakeManager()
    got = call(files, manager, freebsd=True)
    path = "/usr/local/etc/rc.d/vrstack_agent"
    assert got["path"] == path and files.writes == [(path, 0o755)]
    assert files.content[path] == render_rc(AGENT, VENV)
    assert manager.ran == [
        ["sysrc", "-n", "vrstack_agent_enable"],
        ["sysrc", "vrstack_agent_enable=YES"],
        ["service", "vrstack_agent", "status"],
        ["service", "vrstack_agent", "start"],
    ]
    again = FakeManager(enabled=True, active=True)
    assert call(files, again, freebsd=True)["changed"] is False
    failing = FakeManager(enabled=True, start_fails=True)
    with pytest.raises(
        SdnServiceError, match=r"(?s)service vrstack_agent start failed.*is not running"
    ):
        call(files, failing, freebsd=True)


def test_the_rc_script_is_the_one_the_template_wrote() -> None:
    # The FreeBSD goldens hold what the role's template rendered: same bytes, no restart.
    spec = {k: AGENT[k] for k in ("name", "description", "config", "user", "group")}
    golden = GOLDEN / "bsd-cmp1" / "usr" / "local" / "etc" / "rc.d" / "vrstack_agent.golden"
    assert render_rc(spec, VENV) == golden.read_text()


def test_the_rc_script_reloads_the_daemon_not_its_supervisor(tmp_path: Path) -> None:
    rc = render_rc({**AGENT, "name": "vrstack-api", "rc_require": ["etcd"]}, VENV)
    lines = rc.splitlines()
    assert lines[0] == "#!/bin/sh" and "# REQUIRE: NETWORKING etcd" in lines
    assert 'extra_commands="reload"' in lines and 'reload_cmd="vrstack_api_reload"' in lines
    assert '\t/bin/kill -HUP "$(cat /var/run/vrstack_api.child.pid)"' in lines
    assert "-p /var/run/vrstack_api.child.pid" in rc
    script = tmp_path / "vrstack_api"
    script.write_text(rc)
    res = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr


def test_the_systemd_unit() -> None:
    unit = render_unit(AGENT, VENV).splitlines()
    assert unit[0] == "# Ansible managed"
    assert "ExecStart=/opt/vrstack/venv/bin/vrstack-agent --config /etc/vrstack/agent.yaml" in unit
    assert {"User=vrouter", "Group=vrouter", "Restart=on-failure"} <= set(unit)
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "AmbientCapabilities=CAP_NET_ADMIN" in unit
    assert "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK" in unit
    assert "PartOf=vrouterd.service" in unit
    assert {"ReadWritePaths=/var/lib/vrouter", "ReadWritePaths=-/run/vrouter"} <= set(unit)
    assert "After=network-online.target vrouterd.service" in unit
    bare = render_unit(
        {k: AGENT[k] for k in ("name", "description", "config", "user", "group")}, VENV
    )
    assert (
        "PartOf=" not in bare
        and "SupplementaryGroups=" not in bare
        and "ReadWritePaths=" not in bare
    )


def test_main_in_check_mode_reports_a_new_unit_and_writes_nothing(tmp_path: Path) -> None:
    name = "vrstack-unittest-none"
    args = {k: AGENT[k] for k in ("description", "config", "user", "group")} | {"name": name}
    rc, got = run_module(tmp_path, "sdn_service", args, True, True)
    assert rc == 0, got
    assert got["changed"] and got["ansible_facts"] == {
        "__sdn_service_new_vrstack_unittest_none": True
    }
    assert got["diff"]["after"].startswith("# Ansible managed\n[Unit]\n")
    assert not os.path.exists(got["path"])
