"""The state of every vrstack service on this node (what `vrstack-status` and the
`vrstack.cloud.sdn_status` module report, like contrail-status).

Each known service whose unit is installed is reported as

- `active`: the unit runs and its `/health` answers ok (or it has no `/health`);
- `backup`: it runs and its `/health` says it stands by for another node (`role: backup`);
- `initializing` with a reason: it runs but `/health` is degraded or not answering yet;
- `inactive` with a reason: the unit is not running (stopped, failed, restarting).

The datapath is either the kernel module (`vrouter.ko` loaded) or the userspace
`vrouterd`. Services are found by their systemd units (rc.d scripts on FreeBSD); the
health address comes from the config file the unit runs with (`--config`).
"""

from __future__ import annotations

import json
import os
import platform
import re
import socket
import ssl
import subprocess
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from ..service.settings import ConfigError, Settings


@dataclass(frozen=True)
class Known:
    """A service the roles install: its unit, config file and health listener defaults."""

    name: str
    role: str  # the inventory role that runs it
    config: str = ""  # default config file; empty: no /health
    port: int = 0  # default listen.port
    host: str = "127.0.0.1"  # default listen.host


# The units of roles/sdn_config (vars: __sdn_config_services), sdn_control, vrouter
# (agent.yml, user.yml, vhost0.yml) and the analytics collector; all installed by
# sdn_package's service.yml as <name>.service (rc.d: <name with _>).
KNOWN = (
    Known("vrstack-api", "controller", "/etc/vrstack/api.yaml", 8082),
    Known("vrstack-schema", "controller", "/etc/vrstack/schema.yaml", 8087),
    Known("vrstack-control", "control", "/etc/vrstack/control.yaml", 8083),
    Known("vrstack-collector", "analytics", "/etc/vrstack/collector.yaml", 8081),
    Known("vrouterd", "compute"),
    Known("vrouter-vhost0", "compute"),
    Known("vrstack-agent", "compute", "/etc/vrstack/agent.yaml", 8085),
)

ACTIVE, BACKUP, INITIALIZING, INACTIVE = "active", "backup", "initializing", "inactive"


@dataclass
class Unit:
    """What the init system says about one unit."""

    installed: bool
    running: bool
    detail: str = ""  # e.g. "failed (exit-code)"
    config: str = ""  # the --config path of its command line


class System(Protocol):
    """The host: its init system, files and HTTP (a fake in unit tests)."""

    def unit(self, name: str) -> Unit: ...
    def kmod_loaded(self) -> bool: ...
    def get(self, url: str, timeout: float, cert: str = "") -> tuple[int, Any]: ...


# Health listeners are local or on the fabric: never through an http_proxy of the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))
_CONFIG_ARG = re.compile(r"--config[= ](\S+)")


def _pinned_opener(cert: str) -> urllib.request.OpenerDirector:
    """HTTPS that accepts exactly `cert`, the certificate the service is configured
    with: its own address may be 127.0.0.1 (not in the certificate), but no other key
    passes for it."""
    ctx = ssl.create_default_context(cafile=cert)
    ctx.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    ctx.check_hostname = False
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=ctx)
    )


class LocalSystem:
    """systemd on Linux, rc.d on FreeBSD."""

    def __init__(self) -> None:
        self.freebsd = platform.system() == "FreeBSD"

    def _run(self, argv: list[str]) -> tuple[int, str]:
        try:
            res = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return 127, str(exc)
        return res.returncode, res.stdout

    def unit(self, name: str) -> Unit:
        if self.freebsd:
            return self._rc(name.replace("-", "_"))
        rc, out = self._run(
            [
                "systemctl",
                "show",
                f"{name}.service",
                "-p",
                "LoadState,ActiveState,SubState,Result,ExecStart",
            ]
        )
        props = dict(line.split("=", 1) for line in out.splitlines() if "=" in line)
        if rc != 0 or props.get("LoadState") != "loaded":
            return Unit(False, False)
        m = _CONFIG_ARG.search(props.get("ExecStart", ""))
        active, sub = props.get("ActiveState", ""), props.get("SubState", "")
        detail = f"{active}/{sub}"
        if props.get("Result", "success") != "success":
            detail += f" ({props['Result']})"
        return Unit(True, active == "active", detail, m.group(1) if m else "")

    def _rc(self, name: str) -> Unit:
        script = f"/usr/local/etc/rc.d/{name}"
        if not os.path.exists(script):
            return Unit(False, False)
        rc, out = self._run(["service", name, "onestatus"])
        config = ""
        try:
            with open(script, encoding="utf-8") as f:
                m = _CONFIG_ARG.search(f.read())
                config = m.group(1).strip("\"'") if m else ""
        except OSError:
            pass
        return Unit(True, rc == 0, out.strip() or f"service {name} onestatus: exit {rc}", config)

    def kmod_loaded(self) -> bool:
        if self.freebsd:
            return self._run(["kldstat", "-q", "-n", "vrouter"])[0] == 0
        return os.path.isdir("/sys/module/vrouter")

    def get(self, url: str, timeout: float, cert: str = "") -> tuple[int, Any]:
        opener = _OPENER if not cert else _pinned_opener(cert)
        try:
            with opener.open(url, timeout=timeout) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw)
        except ValueError:
            return status, raw.decode("utf-8", "replace")


@dataclass
class ServiceStatus:
    name: str
    role: str
    state: str
    reason: str = ""
    health: str = ""  # the URL asked


@dataclass
class NodeStatus:
    node: str
    datapath: dict[str, str] = field(default_factory=dict)
    services: list[ServiceStatus] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(s.state in (ACTIVE, BACKUP) for s in self.services)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["ok"] = self.ok
        out["not_active"] = [s.name for s in self.services if s.state not in (ACTIVE, BACKUP)]
        return out


def served_cert(config: str) -> str:
    """The certificate of an HTTPS listener (`http.tls.cert`); "" for plain HTTP."""
    try:
        return Settings.load(config).get_str("http.tls.cert", "")
    except ConfigError:
        return ""


def health_url(known: Known, config: str) -> tuple[str, str]:
    """The /health URL from the service's config file; ("", why) when it cannot tell."""
    host, port = known.host, known.port
    path = config or known.config
    scheme = "https" if served_cert(path) else "http"
    try:
        settings = Settings.load(path)
        host = settings.get_str("listen.host", host)
        port = settings.get_int("listen.port", port, low=0, high=65535)
    except ConfigError as exc:
        if os.path.exists(path):  # e.g. no permission: the defaults may still be right
            return f"{scheme}://{host}:{port}/health", f"(defaults: {exc})"
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"{scheme}://{host}:{port}/health", ""


_REASON_KEYS = ("error", "last_error", "store_error", "bgp", "reason")


def _degraded_reason(name: str, body: Any) -> str:
    """Why a degraded /health is not ok, in words, from what each service reports."""
    if not isinstance(body, dict):
        return str(body)[:200]
    if name == "vrstack-agent" and not body.get("sessions_up"):
        return "no control node session up"
    if name == "vrstack-control" and body.get("config_connected") is False:
        return "not connected to the config API"
    if name == "vrstack-schema" and body.get("connected") is False:
        return "not connected to the config API"
    for key in _REASON_KEYS:
        value = body.get(key)
        if value and value != "running":
            return f"{key}: {value}"
    return "health: " + ", ".join(f"{k}={v}" for k, v in sorted(body.items()))[:200]


def service_status(system: System, known: Known, unit: Unit, timeout: float) -> ServiceStatus:
    if not unit.running:
        return ServiceStatus(known.name, known.role, INACTIVE, unit.detail or "not running")
    if not known.config:
        return ServiceStatus(known.name, known.role, ACTIVE)
    url, note = health_url(known, unit.config)
    cert = served_cert(unit.config or known.config)
    try:
        status, body = system.get(url, timeout, cert) if cert else system.get(url, timeout)
    except (OSError, urllib.error.URLError) as exc:
        reason = getattr(exc, "reason", exc)
        return ServiceStatus(
            known.name,
            known.role,
            INITIALIZING,
            f"no answer on {url}: {reason} {note}".strip(),
            url,
        )
    if isinstance(body, dict) and body.get("role") == BACKUP:
        return ServiceStatus(known.name, known.role, BACKUP, str(body.get("reason", "")), url)
    if status == 200:
        return ServiceStatus(known.name, known.role, ACTIVE, "", url)
    return ServiceStatus(
        known.name, known.role, INITIALIZING, _degraded_reason(known.name, body), url
    )


def datapath(system: System, units: dict[str, Unit]) -> dict[str, str]:
    """kernel (vrouter.ko loaded), user (vrouterd unit) or none."""
    if system.kmod_loaded():
        return {"mode": "kernel", "detail": "vrouter kernel module loaded"}
    vrouterd = units.get("vrouterd")
    if vrouterd is not None and vrouterd.installed:
        state = "running" if vrouterd.running else f"not running ({vrouterd.detail})"
        return {"mode": "user", "detail": f"userspace vrouterd {state}"}
    if "vrstack-agent" in units:
        return {"mode": "none", "detail": "no vrouter kernel module and no vrouterd"}
    return {"mode": "none", "detail": "not a compute"}


def collect(system: System | None = None, timeout: float = 3.0) -> NodeStatus:
    system = system or LocalSystem()
    node = NodeStatus(socket.gethostname())
    units: dict[str, Unit] = {}
    for known in KNOWN:
        unit = system.unit(known.name)
        if not unit.installed:
            continue
        units[known.name] = unit
        node.services.append(service_status(system, known, unit, timeout))
    node.datapath = datapath(system, units)
    return node


def render(node: NodeStatus) -> str:
    """contrail-status style text for a person."""
    lines = [
        f"== vrstack on {node.node} ==",
        f"datapath: {node.datapath['mode']} ({node.datapath['detail']})",
    ]
    width = max((len(s.name) for s in node.services), default=10) + 2
    if not node.services:
        lines.append("no vrstack services installed on this node")
    for s in node.services:
        state = f"{s.state} ({s.reason})" if s.reason else s.state
        lines.append(f"{s.name:<{width}}{state}")
    return "\n".join(lines)
