"""The local vrouter agent's port API as the os-vif plugin uses it, and the port records.

No os-vif import here: `python -m vrstack.openstack.agentapi [--agent URL] [--port-dir DIR]`
replays the recorded ports to an agent that lost them (after a reinstall, say).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

JSON = dict[str, Any]


def agent_call(url: str, method: str, path: str, body: Any, timeout: float) -> tuple[int, Any]:
    """One request to the agent; (0, message) when it cannot be reached."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        raw = exc.read()
        try:
            return exc.code, json.loads(raw or b"null")
        except ValueError:
            return exc.code, {"error": raw.decode(errors="replace")[:200]}
    except (OSError, ValueError) as exc:
        return 0, {"error": f"unreachable: {exc}"}


def error_text(out: Any) -> str:
    return str(out.get("error", out)) if isinstance(out, dict) else str(out)


class PortRecords:
    """The ports plugged on this host, one JSON file each (written atomically)."""

    def __init__(self, directory: str) -> None:
        self.dir = Path(directory)

    def _file(self, port_id: str) -> Path:
        return self.dir / f"{port_id}.json"

    def put(self, port: JSON) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o750)
        path = self._file(port["id"])
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            f.write(json.dumps(port, sort_keys=True))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def get(self, port_id: str) -> JSON | None:
        path = self._file(port_id)
        if not path.exists():
            return None
        record: JSON = json.loads(path.read_text())
        return record

    def delete(self, port_id: str) -> None:
        self._file(port_id).unlink(missing_ok=True)

    def all(self) -> list[JSON]:
        if not self.dir.is_dir():
            return []
        return [json.loads(p.read_text()) for p in sorted(self.dir.glob("*.json"))]


def replay(agent_url: str, port_dir: str, timeout: float = 10.0) -> list[str]:
    """Send every recorded port to the agent again; returns the errors (empty: all done)."""
    errors = []
    for port in PortRecords(port_dir).all():
        status, out = agent_call(agent_url, "POST", "/ports", port, timeout)
        if status == 0 or status >= 400:
            errors.append(f"port {port.get('id')}: {error_text(out)}")
    return errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m vrstack.openstack.agentapi",
        description="Give a (re)started agent the ports this host's Nova plugged.",
    )
    parser.add_argument("--agent", default="http://127.0.0.1:8085")
    parser.add_argument("--port-dir", default="/var/lib/vrstack/vif-ports")
    a = parser.parse_args(argv)
    errors = replay(a.agent, a.port_dir)
    for err in errors:
        print(f"vrstack agent replay: {err}", file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
