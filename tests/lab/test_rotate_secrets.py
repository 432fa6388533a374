"""Rotating secrets on the deployed lab (playbooks/rotate-secrets.yml, docs/security.md,
"Rotating secrets"): glance's Keystone password and nova's MariaDB password get new
values while a thread asks Keystone for a fresh token and then Glance and Nova for a
list every 0.25 s; afterwards the services work with the new values, MariaDB refuses the
old one, and a run with nothing asked changes nothing.

Run by the lead on a deployed lab (`make lab`), never by hand on a shared machine:

    ./scripts/run-pytest.sh -rA tests/lab/test_rotate_secrets.py

The APIs must answer every poll (no refused or reset connection, no timeout). Failed
answers are allowed only inside the one window docs/security.md describes: from
Keystone's password change to glance-api's reload, glance's old workers cannot renew
their service token (Keystone revokes a user's tokens when its password changes), so a
token they have not validated yet gets 503. The test prints how many polls failed and
how long the longest run of failures lasted.

Secrets go nowhere but the nodes' stdin; assertion messages name secrets, never values.
"""

from __future__ import annotations

import http.client
import json
import re
import shlex
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import test_security as security
from labcloud import REPO, Cli, sdn_context
from test_infra_tls import CA, LOGIN_SCRIPT
from test_security import Lab, on_node, secrets_file

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory)

INVENTORY = security.INVENTORY
ROTATED = ["glance_keystone_password", "nova_controller_db_password"]
POLL_INTERVAL = 0.25
REQUEST_TIMEOUT = 30.0  # a reload's new workers load the app while requests wait in the backlog
WINDOW_LIMIT = 10.0  # seconds of failed answers allowed (docs/security.md: "Rotating secrets")


def run_playbook(*args: str, timeout: float = 3600) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "tools/lab.py", "hold", "--",
           "ansible-playbook", "-i", INVENTORY, "playbooks/rotate-secrets.yml", *args]  # fmt: skip
    out = subprocess.run(
        cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False
    )
    assert out.returncode == 0, (
        f"{' '.join(args)} failed:\n{out.stdout[-4000:]}\n{out.stderr[-2000:]}"
    )
    return out


def recap_changed(output: str) -> dict[str, int]:
    """changed=N of every host in the PLAY RECAP."""
    return {
        m[1]: int(m[2]) for m in re.finditer(r"^(\S+)\s+:\s+ok=\d+\s+changed=(\d+)", output, re.M)
    }


def asking(secret_names: list[str]) -> str:
    return json.dumps({"rotate": secret_names})


# ---- the poller -------------------------------------------------------------------------


def _open(req: urllib.request.Request) -> Any:
    return urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT, context=sdn_context(req.full_url))


def _auth_body(env: dict[str, str]) -> bytes:
    return json.dumps({"auth": {
        "identity": {"methods": ["password"], "password": {"user": {
            "name": env["OS_USERNAME"], "password": env["OS_PASSWORD"],
            "domain": {"name": env.get("OS_USER_DOMAIN_NAME", "Default")}}}},
        "scope": {"project": {"name": env["OS_PROJECT_NAME"],
                              "domain": {"name": env.get("OS_PROJECT_DOMAIN_NAME", "Default")}}},
    }}).encode()  # fmt: skip


def issue_token(env: dict[str, str], catalog: bool) -> tuple[str, dict[str, Any]]:
    url = env["OS_AUTH_URL"].rstrip("/") + "/auth/tokens" + ("" if catalog else "?nocatalog")
    req = urllib.request.Request(
        url, data=_auth_body(env), headers={"Content-Type": "application/json"}, method="POST"
    )
    with _open(req) as resp:
        return str(resp.headers["X-Subject-Token"]), json.loads(resp.read())


def public_url(body: dict[str, Any], kind: str) -> str:
    for service in body["token"]["catalog"]:
        if service["type"] == kind:
            for endpoint in service["endpoints"]:
                if endpoint["interface"] == "public":
                    return str(endpoint["url"]).rstrip("/")
    raise AssertionError(f"no public {kind} endpoint in the catalog")


@dataclass
class Poller:
    """Every POLL_INTERVAL: a fresh token (so each API must validate a token it has not
    seen, which needs its own service credentials), then one list from Glance and Nova."""

    env: dict[str, str]
    urls: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    rounds: int = 0
    # (monotonic time, api, what): "refused"-like for a connection that failed, else the status.
    failures: list[tuple[float, str, str]] = field(default_factory=list)

    def ask(self, api: str, call: Callable[[], object]) -> None:
        try:
            call()
        except urllib.error.HTTPError as exc:
            self.failures.append((time.monotonic(), api, str(exc.code)))
        except (OSError, http.client.HTTPException) as exc:  # refused, reset, timed out
            self.failures.append((time.monotonic(), api, f"no answer: {type(exc).__name__}"))

    def run(self) -> None:
        while not self.stop.is_set():
            token: list[str] = []
            self.ask(
                "keystone",
                lambda got=token: got.append(issue_token(self.env, catalog=False)[0]),
            )
            if token:
                for api, url in self.urls.items():
                    req = urllib.request.Request(url, headers={"X-Auth-Token": token[0]})
                    self.ask(api, lambda req=req: _open(req).close())
            self.rounds += 1
            self.stop.wait(POLL_INTERVAL)

    def no_answer(self) -> list[tuple[float, str, str]]:
        return [f for f in self.failures if f[2].startswith("no answer")]

    def longest_window(self) -> float:
        """The longest stretch of failures no more than 5 s apart, in seconds."""
        times = sorted(t for t, _api, _what in self.failures)
        longest, start = 0.0, None
        for i, t in enumerate(times):
            if start is None or t - times[i - 1] > 5:
                start = t
            longest = max(longest, t - start + POLL_INTERVAL)
        return longest


# ---- the checks -------------------------------------------------------------------------


def test_check_mode_writes_nothing(admin_env: dict[str, str]) -> None:
    before = secrets_file()
    out = run_playbook("--check", "-e", asking(["glance_db_password"]))
    # The play names what would change (the callback may fold the line).
    assert re.search(r"would rotate:\s+glance_db_password", out.stdout), out.stdout[-3000:]
    assert secrets_file() == before, "a --check run changed the secrets file"


@dataclass(frozen=True)
class Rotation:
    before: dict[str, str]
    after: dict[str, str]
    output: str
    poller: Poller


@pytest.fixture(scope="module")
def rotation(admin_env: dict[str, str]) -> Iterator[Rotation]:
    before = secrets_file()
    _token, body = issue_token(admin_env, catalog=True)
    urls = {
        "glance": public_url(body, "image") + "/v2/images?limit=1",
        "nova": public_url(body, "compute") + "/servers?limit=1",
    }
    poller = Poller(admin_env, urls)
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    time.sleep(2)  # a few good rounds first
    try:
        out = run_playbook("-e", asking(ROTATED))
        time.sleep(5)  # and after: the reloaded workers are up
    finally:
        poller.stop.set()
        thread.join(timeout=60)
    yield Rotation(before, secrets_file(), out.stdout + out.stderr, poller)


def test_the_stored_values_changed_and_nothing_else(rotation: Rotation) -> None:
    changed = sorted(k for k in rotation.after if rotation.after[k] != rotation.before.get(k))
    assert changed == sorted(ROTATED), f"secrets that changed: {changed}, wanted {ROTATED}"


def test_no_secret_in_the_playbook_output(rotation: Rotation) -> None:
    shown = [
        name
        for name in ROTATED
        for value in (rotation.before[name], rotation.after[name])
        if value in rotation.output
    ]
    assert not shown, f"the playbook's output shows the values of {shown}"


def test_the_apis_answered_throughout(rotation: Rotation) -> None:
    p = rotation.poller
    print(
        f"\nrotation: {p.rounds} rounds, {len(p.failures)} failed answers "
        f"({sorted({f'{api} {what}' for _t, api, what in p.failures})}), "
        f"longest window {p.longest_window():.1f} s"
    )
    assert p.rounds > 20, f"only {p.rounds} polling rounds: the poller did not run"
    assert not p.no_answer(), f"an API did not answer: {p.no_answer()[:5]}"
    wrong = [f for f in p.failures if f[2] not in ("401", "503")]
    assert not wrong, f"failures other than the documented token window: {wrong[:5]}"
    assert p.longest_window() <= WINDOW_LIMIT, (
        f"failed answers for {p.longest_window():.1f} s, over the {WINDOW_LIMIT} s window"
    )


def test_the_services_work_with_the_new_values(rotation: Rotation, admin: Cli) -> None:
    admin.ok("image", "list")
    admin.ok("server", "list")


def test_mariadb_refuses_the_old_password(rotation: Rotation, lab: Lab) -> None:
    node = lab.by_role("database")[0]
    users = {"nova": rotation.before["nova_controller_db_password"]}
    script = f"python3 -c {shlex.quote(LOGIN_SCRIPT)} {node.ip} {CA}"
    out = on_node(lab, node, script, stdin=json.dumps(users))
    assert out.returncode == 0, f"{node.name}: {out.stderr.strip()[-1500:]}"
    # 1045: access denied (over TLS, so the password is what is refused).
    assert json.loads(out.stdout)["nova"]["tls"] == "error 1045", "the old password still logs in"
    new = {"nova": rotation.after["nova_controller_db_password"]}
    out = on_node(lab, node, script, stdin=json.dumps(new))
    got = json.loads(out.stdout)["nova"]["tls"]
    assert got in ("TLSv1.2", "TLSv1.3"), f"the new password does not log in: {got}"


def test_a_run_with_nothing_asked_changes_nothing(rotation: Rotation) -> None:
    before = secrets_file()
    out = run_playbook()
    changed = recap_changed(out.stdout)
    assert changed, f"no PLAY RECAP in:\n{out.stdout[-2000:]}"
    assert set(changed.values()) == {0}, f"changed hosts: {changed}"
    assert secrets_file() == before
