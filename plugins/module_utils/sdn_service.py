# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The logic of vrstack.cloud.sdn_service: one vrstack daemon as a system service, what
sdn_package's `service` entry point did in five tasks (unit or rc.d script from a
template, the check-mode note, enable, start) in one call. The unit text is rendered
here and nowhere else. Host access (files, commands) is passed in so the tests need no
host."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from typing import Any

# The header the role's templates wrote (Ansible's default ansible_managed): the same
# text keeps units written by earlier versions unchanged (no restart on upgrade).
MANAGED = "# Ansible managed"
SYSTEMD_DIR = "/etc/systemd/system"
RC_DIR = "/usr/local/etc/rc.d"

# argv -> (rc, stdout, stderr), as AnsibleModule.run_command
Run = Callable[[list[str]], tuple[int, str, str]]


class SdnServiceError(Exception):
    """A failed command (the daemon did not start, systemctl or sysrc failed)."""


def rc_name(name: str) -> str:
    """The rc.d name of a service (rc.subr wants a shell variable name)."""
    return name.replace("-", "_")


def fact_name(name: str) -> str:
    """The fact that marks a service only check mode would install: the restart handlers
    of the service roles skip it (there is nothing to restart yet)."""
    return "__sdn_service_new_" + rc_name(name)


def _words(spec: Mapping[str, Any], key: str) -> str:
    return " ".join(spec.get(key) or [])


def render_unit(spec: Mapping[str, Any], venv: str) -> str:
    """The systemd unit of a daemon (Debian)."""
    name = spec["name"]
    caps = _words(spec, "capabilities")
    lines = [
        MANAGED,
        "[Unit]",
        f"Description={spec['description']}",
        f"After=network-online.target {_words(spec, 'after')}",
        f"Wants=network-online.target {_words(spec, 'wants')}",
    ]
    if spec.get("part_of"):
        lines.append(f"PartOf={_words(spec, 'part_of')}")
    lines += ["", "[Service]", "Type=simple", f"User={spec['user']}", f"Group={spec['group']}"]
    if spec.get("supplementary_groups"):
        lines.append(f"SupplementaryGroups={_words(spec, 'supplementary_groups')}")
    lines += [
        f"ExecStart={venv}/bin/{name} --config {spec['config']}",
        "# SIGHUP: the daemon reads its config file again for new tokens, keeping its sessions",
        "# (playbooks/rotate-secrets.yml); any other change needs a restart.",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=2",
        "# The daemon logs one JSON object per line on stderr: the journal keeps it.",
        f"SyslogIdentifier={name}",
        "# Hardening that leaves the daemon what it needs: its state directory, the",
        "# capabilities listed, and the network.",
        f"CapabilityBoundingSet={caps}",
        f"AmbientCapabilities={caps}",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
    ]
    lines += [f"ReadWritePaths={path}" for path in spec.get("read_write_paths") or []]
    netlink = " AF_NETLINK" if spec.get("netlink") else ""
    lines += [
        "PrivateTmp=yes",
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectControlGroups=yes",
        f"RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6{netlink}",
        "RestrictNamespaces=yes",
        "RestrictRealtime=yes",
        "LockPersonality=yes",
        "SystemCallArchitectures=native",
        "UMask=0027",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
    ]
    return "\n".join(lines) + "\n"


def render_rc(spec: Mapping[str, Any], venv: str) -> str:
    """The rc.d script of a daemon (FreeBSD): it runs under daemon(8), which restarts it
    when it exits, keeps the pidfiles and sends its output to syslog."""
    name = spec["name"]
    rc = rc_name(name)
    return f"""#!/bin/sh
{MANAGED}
#
# PROVIDE: {rc}
# REQUIRE: NETWORKING {_words(spec, "rc_require")}
# KEYWORD: shutdown
#
# {spec["description"]}: runs under daemon(8), which restarts it when
# it exits, keeps the pidfiles and sends its output (JSON lines) to syslog.

. /etc/rc.subr

name="{rc}"
rcvar="{rc}_enable"
desc="{spec["description"]}"

load_rc_config "$name"
: "${{{rc}_enable:=NO}}"
: "${{{rc}_config:={spec["config"]}}}"

pidfile="/var/run/{rc}.pid"
procname="/usr/sbin/daemon"
command="/usr/sbin/daemon"
command_args="-r -R 2 -P ${{pidfile}} -p /var/run/{rc}.child.pid -u {spec["user"]} -T {name} {venv}/bin/{name} --config ${{{rc}_config}}"
required_files="${{{rc}_config}}"

# reload: SIGHUP to the daemon itself, daemon(8)'s child: it reads its config file again
# for new tokens, keeping its sessions (playbooks/rotate-secrets.yml).
extra_commands="reload"
reload_cmd="{rc}_reload"
{rc}_reload()
{{
\t/bin/kill -HUP "$(cat /var/run/{rc}.child.pid)"
}}

run_rc_command "$1"
"""


def read_text(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except FileNotFoundError:
        return None


def write_text(path: str, text: str, mode: int) -> None:
    """Replace the file in one step (a half-written unit is never read), owned by root."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".sdn_service.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, mode)
        os.chown(tmp, 0, 0)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def needs_owner_fix(path: str, mode: int) -> bool:
    """The file is there but not root's with the mode the role gives it."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    return st.st_uid != 0 or st.st_gid != 0 or (st.st_mode & 0o7777) != mode


def fix_owner(path: str, mode: int) -> None:
    os.chmod(path, mode)
    os.chown(path, 0, 0)


def _must(run: Run, argv: list[str]) -> str:
    rc, out, err = run(argv)
    if rc != 0:
        raise SdnServiceError(f"{' '.join(argv)} failed with exit {rc}: {(err or out).strip()}")
    return out


def _start(run: Run, argv: list[str], status: list[list[str]]) -> None:
    """Start the service; when that fails, the error carries what the service manager
    (and its log) says about it, so the operator need not log in to find out why."""
    rc, out, err = run(argv)
    if rc == 0:
        return
    lines = [f"{' '.join(argv)} failed with exit {rc}: {(err or out).strip()}"]
    for cmd in status:
        _rc, sout, serr = run(cmd)
        lines.append(f"$ {' '.join(cmd)}\n{(sout + serr).rstrip()}")
    raise SdnServiceError("\n".join(lines))


class Files:
    """How ensure() reaches the host's files (replaced in the tests)."""

    read: Callable[[str], str | None] = staticmethod(read_text)
    write: Callable[[str, str, int], None] = staticmethod(write_text)
    needs_owner_fix: Callable[[str, int], bool] = staticmethod(needs_owner_fix)
    fix_owner: Callable[[str, int], None] = staticmethod(fix_owner)


def ensure(
    spec: Mapping[str, Any],
    *,
    venv: str,
    freebsd: bool,
    check_mode: bool,
    run: Run,
    files: Files | None = None,
    directory: str | None = None,
) -> dict[str, Any]:
    """Write the unit (or rc.d script), enable and start the service; the result says
    what changed. In check mode a unit that would be written is neither enabled nor
    started, and the fact fact_name() marks it for the restart handlers."""
    files = files or Files()
    name = spec["name"]
    if freebsd:
        path = os.path.join(directory or RC_DIR, rc_name(name))
        text, mode = render_rc(spec, venv), 0o755
    else:
        path = os.path.join(directory or SYSTEMD_DIR, f"{name}.service")
        text, mode = render_unit(spec, venv), 0o644
    before = files.read(path)
    unit_changed = before != text
    owner_changed = not unit_changed and files.needs_owner_fix(path, mode)
    result: dict[str, Any] = {
        "path": path,
        "unit_changed": unit_changed,
        "diff": {
            "before_header": path,
            "after_header": path,
            "before": before or "",
            "after": text,
        },
    }
    if check_mode and unit_changed:
        # Nothing to enable or start yet (or the old unit): as the role's note did.
        return {
            **result,
            "changed": True,
            "enabled_changed": False,
            "started": False,
            "ansible_facts": {fact_name(name): True},
        }
    if not check_mode:
        if unit_changed:
            files.write(path, text, mode)
        elif owner_changed:
            files.fix_owner(path, mode)
    if freebsd:
        enabled_changed, started = _freebsd(name, check_mode, run)
    else:
        enabled_changed, started = _systemd(name, unit_changed, check_mode, run)
    changed = unit_changed or owner_changed or enabled_changed or started
    return {**result, "changed": changed, "enabled_changed": enabled_changed, "started": started}


def _systemd(name: str, unit_changed: bool, check_mode: bool, run: Run) -> tuple[bool, bool]:
    unit = f"{name}.service"
    if unit_changed and not check_mode:
        _must(run, ["systemctl", "daemon-reload"])
    rc, out, _err = run(["systemctl", "is-enabled", unit])
    enable = rc != 0 or out.strip() not in ("enabled", "enabled-runtime", "static", "alias")
    if enable and not check_mode:
        _must(run, ["systemctl", "enable", unit])
    rc, _out, _err = run(["systemctl", "is-active", "--quiet", unit])
    start = rc != 0
    if start and not check_mode:
        _start(
            run,
            ["systemctl", "start", unit],
            [
                ["systemctl", "status", "--no-pager", "--lines=0", unit],
                ["journalctl", "--no-pager", "--lines=20", "--unit", unit],
            ],
        )
    return enable, start


def _freebsd(name: str, check_mode: bool, run: Run) -> tuple[bool, bool]:
    rc = rc_name(name)
    var = f"{rc}_enable"
    code, out, _err = run(["sysrc", "-n", var])
    enable = code != 0 or out.strip() != "YES"
    if enable and not check_mode:
        _must(run, ["sysrc", f"{var}=YES"])
    code, _out, _err = run(["service", rc, "status"])
    start = code != 0
    if start and not check_mode:
        _start(
            run,
            ["service", rc, "start"],
            [["service", rc, "status"], ["tail", "-n", "20", "/var/log/messages"]],
        )
    return enable, start
