"""Local ports (a VM's tap attached to a routing instance), persisted to a JSON file.

`vrstack-port add` (or Nova's vif plugin) records a port here; the file is rewritten
atomically on each change so an agent restart replays every port. The os-vif plugin's
own records (one JSON file per port in `port_dir`) are read at start too (`read_dir`).
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_MAC = re.compile(r"^[0-9a-f]{2}(:[0-9a-f]{2}){5}$")
_NAME = re.compile(r"^[A-Za-z0-9_.:-]{1,255}$")


class PortError(ValueError):
    """A bad port description; the message names the field."""


@dataclass(frozen=True)
class Port:
    id: str
    instance: str  # the routing instance's fq_name joined with ':'; "": from `network`
    network: str
    mac: str
    ips: tuple[str, ...] = field(default_factory=tuple)
    tap: str = ""

    @classmethod
    def from_dict(cls, data: Any) -> Port:
        if not isinstance(data, dict):
            raise PortError("port: must be a JSON object")
        unknown = set(data) - {"id", "instance", "network", "mac", "ips", "tap"}
        if unknown:
            raise PortError(f"{sorted(unknown)[0]}: unknown field")
        for key in ("id", "network"):
            if not isinstance(data.get(key), str) or not _NAME.match(data[key]):
                raise PortError(f"{key}: required, letters, digits and _.:- only")
        # Optional: without it the agent finds the network's routing instance itself.
        instance = data.get("instance") or ""
        if not isinstance(instance, str) or (instance and not _NAME.match(instance)):
            raise PortError("instance: letters, digits and _.:- only")
        mac = str(data.get("mac", "")).lower()
        if not _MAC.match(mac):
            raise PortError(f"mac: not a MAC address: {data.get('mac')!r}")
        ips = data.get("ips", [])
        if not isinstance(ips, list):
            raise PortError("ips: must be a list of addresses")
        norm = []
        for i, ip in enumerate(ips):
            try:
                norm.append(str(ipaddress.ip_address(ip)))
            except (ValueError, TypeError):
                raise PortError(f"ips[{i}]: not an IP address: {ip!r}") from None
        tap = data.get("tap", "")
        if not isinstance(tap, str) or len(tap.encode()) > 15 or "\0" in tap:
            raise PortError("tap: must be an interface name of at most 15 bytes")
        return cls(data["id"], instance, data["network"], mac, tuple(norm), tap)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "instance": self.instance,
            "network": self.network,
            "mac": self.mac,
            "ips": list(self.ips),
            "tap": self.tap,
        }


class PortStore:
    """Ports by id, saved to `path` (when given) after every change."""

    def __init__(self, path: str = "") -> None:
        self.path = path
        self.ports: dict[str, Port] = {}
        self.version = 0  # bumped on every change (the agent's state cache)
        if path and os.path.exists(path):
            try:
                data = json.loads(Path(path).read_text())
                self.ports = {p["id"]: Port.from_dict(p) for p in data["ports"]}
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise PortError(f"{path}: cannot read the port file: {exc}") from None

    def put(self, port: Port) -> None:
        self.ports[port.id] = port
        self.version += 1
        self._save()

    def delete(self, port_id: str) -> bool:
        if self.ports.pop(port_id, None) is None:
            return False
        self.version += 1
        self._save()
        return True

    def _save(self) -> None:
        if not self.path:
            return
        tmp = f"{self.path}.tmp"
        body = {"ports": [p.to_dict() for p in self.ports.values()]}
        with open(tmp, "w") as f:
            # Rewritten on every port change: one line, so json uses its C encoder.
            f.write(json.dumps(body, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)


def read_dir(directory: str) -> tuple[list[Port], list[str]]:
    """The ports recorded one file each in `directory` (the os-vif plugin's `port_dir`),
    and one error per file that is not a port (named, so a bad record is not silent)."""
    ports, errors = [], []
    if not directory or not os.path.isdir(directory):
        return ports, errors
    for path in sorted(Path(directory).glob("*.json")):
        try:
            ports.append(Port.from_dict(json.loads(path.read_text())))
        except (OSError, ValueError) as exc:
            errors.append(f"{path}: {exc}")
    return ports, errors
