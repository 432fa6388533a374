"""What the lab's API checks share: the deploy host's lab state, the `openstack` CLI runner."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CLUSTER = os.environ.get("VRSTACK_CLUSTER", "lab")
STATE = Path.home() / ".local/share/vrstack" / CLUSTER
SERVER_TIMEOUT = 300


def openrc_env(path: Path) -> dict[str, str]:
    env = {}
    for line in path.read_text().splitlines():
        if line.startswith("export ") and "=" in line:
            key, value = line.removeprefix("export ").split("=", 1)
            env[key] = value.strip("'\"")
    return env


class Cli:
    def __init__(self, client: str, env: dict[str, str]) -> None:
        self.client = client
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("OS_")} | env

    def run(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.client, *args],
            env=self.env,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,  # callers check the status: some commands must fail
        )

    def ok(self, *args: str, timeout: float = 120) -> Any:
        """Run a command that must work; its JSON output (`-f json` is added when it lists)."""
        out = self.run(*args, "-f", "json", timeout=timeout)
        assert out.returncode == 0, f"openstack {' '.join(args)}: {out.stderr.strip()}"
        return json.loads(out.stdout or "null")

    def quiet(self, *args: str) -> None:
        out = self.run(*args)
        assert out.returncode == 0, f"openstack {' '.join(args)}: {out.stderr.strip()}"

    def fails(self, *args: str) -> str:
        out = self.run(*args)
        assert out.returncode != 0, f"openstack {' '.join(args)} should have failed: {out.stdout}"
        return out.stderr


def sdn_context(url: str, state: Path = STATE) -> ssl.SSLContext | None:
    """What checks an SDN API's certificate: the deployment CA, which vrstack.cloud.pki
    keeps beside the secrets file on the deploy host (None for an http:// URL)."""
    return ssl.create_default_context(cafile=str(state / "ca.crt")) if url[:6] == "https:" else None


def sdn_open(req: urllib.request.Request, timeout: float, state: Path = STATE) -> Any:
    """`urlopen` for the SDN APIs (the config API, the collector), over TLS when https."""
    return urllib.request.urlopen(req, timeout=timeout, context=sdn_context(req.full_url, state))


def config_api_object(rtype: str, uuid: str) -> dict[str, Any] | None:
    """An object from the SDN config API, read with the reader token from the secrets file."""
    secrets_file = yaml.safe_load((STATE / "secrets.yml").read_text())
    token = secrets_file["sdn_api_reader_token"]
    # The lab's default (cluster.sdn_tls) is HTTPS, on the host the openrc names.
    api = "https:" + openrc_env(STATE / "openrc")["OS_AUTH_URL"].split(":", 2)[1] + ":8082"
    req = urllib.request.Request(f"{api}/{rtype}s/{uuid}")  # collections are plural
    req.add_header("X-Auth-Token", token)
    try:
        with sdn_open(req, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


# ---- identity and catalog ------------------------------------------------------------
