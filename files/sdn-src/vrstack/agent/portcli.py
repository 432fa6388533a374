"""`vrstack-port`: attach a tap to a network through the local agent's port API.

vrstack-port add --id ID --instance PROJ:NET:NET --network NET --mac MAC --ip IP [--tap TAP]
vrstack-port delete --id ID
vrstack-port list
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

DEFAULT_URL = "http://127.0.0.1:8085"


def _call(url: str, method: str, path: str, body: Any = None) -> tuple[int, Any]:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url.rstrip("/") + path, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"null")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vrstack-port", description=__doc__.splitlines()[0])
    parser.add_argument("--agent", default=DEFAULT_URL, help=f"agent URL (default {DEFAULT_URL})")
    sub = parser.add_subparsers(dest="cmd", required=True)
    add = sub.add_parser("add", help="attach a port")
    add.add_argument("--id", required=True)
    add.add_argument("--instance", required=True, help="routing instance, project:network:name")
    add.add_argument("--network", required=True)
    add.add_argument("--mac", required=True)
    add.add_argument("--ip", action="append", default=[], help="fixed IP (repeatable)")
    add.add_argument("--tap", default="")
    delete = sub.add_parser("delete", help="detach a port")
    delete.add_argument("--id", required=True)
    sub.add_parser("list", help="list the ports")
    a = parser.parse_args(argv)
    try:
        if a.cmd == "add":
            body = {"id": a.id, "instance": a.instance, "network": a.network, "mac": a.mac}
            status, out = _call(a.agent, "POST", "/ports", {**body, "ips": a.ip, "tap": a.tap})
        elif a.cmd == "delete":
            status, out = _call(a.agent, "DELETE", f"/ports/{a.id}")
        else:
            status, out = _call(a.agent, "GET", "/ports")
    except (OSError, ValueError) as exc:
        print(f"vrstack-port: cannot reach the agent at {a.agent}: {exc}", file=sys.stderr)
        return 1
    if status >= 400:
        print(f"vrstack-port {a.cmd}: {out.get('error', out)}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
