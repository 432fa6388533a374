"""Rotating secrets on the deployed lab (playbooks/rotate-secrets.yml, docs/security.md,
"Rotating secrets"): glance's Keystone password and nova's MariaDB password get new
values while a thread asks Keystone for a fresh token and then Glance and Nova for a
list every 0.25 s; afterwards the services work with the new values, MariaDB refuses the
old one, and a run with nothing asked changes nothing.

Then the SDN's static tokens (`-e rotate=sdn_tokens`) while each is used against the
config API and the collector as the secrets file has it at that moment: no failed answer,
the old values refused after, the SDN daemons reloaded (same PIDs) and the agents' XMPP
sessions kept.

Then the SDN APIs' Keystone user (`-e rotate=sdn_keystone`: two users in turn) while a
project member's and an admin's fresh Keystone tokens are used on the config API and the
collector every 0.25 s: no failed answer, the APIs switched users by a reload (same
PIDs), a member's token is accepted after, and the old user's old password no longer
logs in to Keystone.

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


# ---- the SDN's static tokens: three passes, no failed answer -----------------------------
# docs/security.md, "Rotating secrets": (a) the config API and the collector accept the new
# and the old value (SIGHUP reload), (b) every client switches, (c) the old value goes.
# A thread asks both APIs with each token as the secrets file has it *now* (whoever reads
# the file at any moment must get a value the servers accept), every 0.25 s.

SDN_TOKENS = {
    # token -> (the API's URL key in the fabric model's endpoints, a GET that needs it)
    "sdn_api_admin_token": ("api_url", "/projects"),
    "sdn_api_reader_token": ("api_url", "/projects"),
    "sdn_api_agent_token": ("api_url", "/projects"),
    "sdn_analytics_admin_token": ("analytics_url", "/status"),
    "sdn_analytics_reader_token": ("analytics_url", "/status"),
}
TOKEN_ROTATION_LIMIT = 600.0  # seconds for the playbook (57 s quiet; over 290 s at load 10+)
TOKEN_POLL_ROUNDS = 2600  # at most (0.25 s apart: more than the limit)
SDN_UNITS = {  # fabric role -> the SDN daemons that must reload, not restart
    "controller": ["vrstack-api", "vrstack-schema"],
    "analytics": ["vrstack-collector"],
    "control": ["vrstack-control"],
    "compute": ["vrstack-agent"],
}
AGENT_VIEW = (
    "python3 -c 'import json, urllib.request; "
    'print(json.dumps(json.load(urllib.request.urlopen("http://127.0.0.1:8085/introspect", '
    "timeout=10))))'"
)


def get(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"X-Auth-Token": token})
    try:
        with _open(req) as resp:
            resp.read()
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@dataclass
class TokenPoller:
    """Each round: the secrets file read again, then one GET per token with its value."""

    urls: dict[str, str]
    stop: threading.Event = field(default_factory=threading.Event)
    rounds: int = 0
    answers: int = 0
    failures: list[tuple[float, str, str]] = field(default_factory=list)

    def tokens(self) -> dict[str, str]:
        """Each name's token for this round: its value in the secrets file now."""
        current = secrets_file()
        return {name: current[name] for name in self.urls}

    def run(self) -> None:
        while not self.stop.is_set() and self.rounds < TOKEN_POLL_ROUNDS:
            for name, token in self.tokens().items():
                try:
                    status = get(self.urls[name], token)
                except (OSError, http.client.HTTPException) as exc:  # refused, reset, timeout
                    self.failures.append((time.monotonic(), name, type(exc).__name__))
                    continue
                self.answers += 1
                if status != 200:
                    self.failures.append((time.monotonic(), name, str(status)))
            self.rounds += 1
            self.stop.wait(POLL_INTERVAL)


def rotate_while_polling(poller: TokenPoller, rotate: str) -> subprocess.CompletedProcess[str]:
    """The playbook with `-e rotate=<rotate>` while `poller` runs in a thread (from 2 s
    before to 3 s after)."""
    thread = threading.Thread(target=poller.run, daemon=True)
    thread.start()
    time.sleep(2)
    try:
        out = run_playbook("-e", asking([rotate]), timeout=TOKEN_ROTATION_LIMIT)
        time.sleep(3)
    finally:
        poller.stop.set()
        thread.join(timeout=60)
    return out


def no_failed_answer(p: TokenPoller, what: str) -> None:
    """Print the poller's counts, then: it ran, and no answer failed (the target)."""
    print(
        f"\n{what}: {p.rounds} rounds, {p.answers} answers, {len(p.failures)} failed "
        f"({sorted({f'{name} {why}' for _t, name, why in p.failures})})"
    )
    assert p.rounds > 20, f"only {p.rounds} polling rounds: the poller did not run"
    assert not p.failures, f"failed answers (target 0): {p.failures[:10]}"


def unit_pids(lab: Lab) -> dict[str, str]:
    """host/unit -> its main PID: a reload keeps it, a restart changes it."""
    pids = {}
    for role, units in SDN_UNITS.items():
        for node in lab.by_role(role):
            out = on_node(lab, node, "systemctl show -p MainPID --value " + " ".join(units))
            assert out.returncode == 0, f"{node.name}: {out.stderr.strip()}"
            for unit, pid in zip(units, out.stdout.split(), strict=True):
                assert pid != "0", f"{node.name}: {unit} is not running"
                pids[f"{node.name}/{unit}"] = pid
    return pids


def agent_views(lab: Lab) -> dict[str, dict[str, Any]]:
    views = {}
    for node in lab.by_role("compute"):
        out = on_node(lab, node, AGENT_VIEW, timeout=60)
        assert out.returncode == 0, f"{node.name}: {out.stderr.strip()}"
        views[node.name] = json.loads(out.stdout)
    return views


def sessions(view: dict[str, Any]) -> dict[str, tuple[str, int, float]]:
    return {s["address"]: (s["state"], s["flaps"], s["established_at"]) for s in view["sessions"]}


@dataclass(frozen=True)
class TokenRotation:
    before: dict[str, str]
    after: dict[str, str]
    output: str
    poller: TokenPoller
    urls: dict[str, str]
    pids: tuple[dict[str, str], dict[str, str]]
    agents: tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]


@pytest.fixture(scope="module")
def token_rotation(lab: Lab) -> Iterator[TokenRotation]:
    urls = {name: lab.model["endpoints"][key] + path for name, (key, path) in SDN_TOKENS.items()}
    before = secrets_file()
    pids, agents = unit_pids(lab), agent_views(lab)
    poller = TokenPoller(urls)
    out = rotate_while_polling(poller, "sdn_tokens")
    yield TokenRotation(
        before,
        secrets_file(),
        out.stdout + out.stderr,
        poller,
        urls,
        (pids, unit_pids(lab)),
        (agents, agent_views(lab)),
    )


def test_every_sdn_token_changed_and_nothing_is_left_of_the_old_ones(
    token_rotation: TokenRotation,
) -> None:
    before, after = token_rotation.before, token_rotation.after
    assert sorted(k for k in SDN_TOKENS if after[k] != before[k]) == sorted(SDN_TOKENS)
    others = sorted(k for k in before if k not in SDN_TOKENS and after.get(k) != before[k])
    assert not others, f"other secrets changed: {others}"
    kept = sorted(k for k in after if k.endswith(("_next", "_previous")))
    assert not kept, f"left in the secrets file: {kept}"
    shown = [n for n in SDN_TOKENS for v in (before[n], after[n]) if v in token_rotation.output]
    assert not shown, f"the playbook's output shows the values of {shown}"


def test_the_sdn_apis_answered_every_poll_with_the_current_token(
    token_rotation: TokenRotation,
) -> None:
    no_failed_answer(token_rotation.poller, "token rotation")


def test_the_old_tokens_are_refused_and_the_new_accepted(token_rotation: TokenRotation) -> None:
    got = {
        name: (get(url, token_rotation.before[name]), get(url, token_rotation.after[name]))
        for name, url in token_rotation.urls.items()
    }
    assert got == dict.fromkeys(SDN_TOKENS, (401, 200)), got


def test_the_sdn_daemons_reloaded_rather_than_restarted(token_rotation: TokenRotation) -> None:
    before, after = token_rotation.pids
    moved = {
        unit: (before[unit], after.get(unit)) for unit in before if after.get(unit) != before[unit]
    }
    assert not moved, f"restarted (main PID before, after): {moved}"


def test_the_agents_kept_their_xmpp_sessions_and_config(token_rotation: TokenRotation) -> None:
    before, after = token_rotation.agents
    for host, view in before.items():
        now = after[host]
        assert all(state == "Established" for state, _f, _t in sessions(view).values()), view
        # Same sessions, never dropped: no flap, the same establishment time.
        assert sessions(now) == sessions(view), f"{host}: {sessions(view)} -> {sessions(now)}"
        assert now["config"]["objects"] == view["config"]["objects"], f"{host}: config changed"
        # Its port-state writes were not refused on the way (the agent token switched).
        errors = [v["counters"].get("status_errors", 0) for v in (view, now)]
        assert errors[0] == errors[1], f"{host}: status_errors {errors[0]} -> {errors[1]}"


# ---- the SDN APIs' Keystone user: two users in turn, no failed answer ---------------------
# docs/security.md, "The SDN's Keystone user, without a gap": the user not in use gets a new
# password, the config API and the collector switch to it by SIGHUP, then the old user's
# password changes (Keystone revokes its tokens). Every round takes fresh tokens, so the
# APIs must validate each with Keystone as their service user (no cached answer helps).

KS = "sdn_keystone_password"
KS_USERS = {"a": "vrstack-sdn", "b": "vrstack-sdn-b"}


def ks_slot(stored: dict[str, str]) -> str:
    return stored.get(KS + "_active", "a")


def ks_password(stored: dict[str, str], slot: str) -> str | None:
    return stored.get(KS if slot == "a" else KS + "_b")


def service_login(env: dict[str, str], user: str, password: str) -> int:
    """Keystone's answer to the SDN service user's own login (201, or 401 refused)."""
    login = env | {"OS_USERNAME": user, "OS_PASSWORD": password, "OS_PROJECT_NAME": "service",
                   "OS_USER_DOMAIN_NAME": "Default", "OS_PROJECT_DOMAIN_NAME": "Default"}  # fmt: skip
    try:
        issue_token(login, catalog=False)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    return 201


@dataclass
class KeystonePoller(TokenPoller):
    """Each round: a fresh Keystone token per name (so the APIs must validate each with
    Keystone as their service user; no cached answer helps), from `envs[name]`'s login."""

    envs: dict[str, dict[str, str]] = field(default_factory=dict)

    def tokens(self) -> dict[str, str]:
        fresh = {}
        for name, env in self.envs.items():
            try:
                fresh[name] = issue_token(env, catalog=False)[0]
            except urllib.error.HTTPError as exc:  # Keystone refused the person's login
                self.failures.append((time.monotonic(), name, f"keystone {exc.code}"))
            except (OSError, http.client.HTTPException) as exc:
                self.failures.append((time.monotonic(), name, f"keystone {type(exc).__name__}"))
        return fresh


@dataclass(frozen=True)
class KeystoneUserRotation:
    before: dict[str, str]
    after: dict[str, str]
    output: str
    poller: KeystonePoller
    pids: tuple[dict[str, str], dict[str, str]]
    member_env: dict[str, str]


@pytest.fixture(scope="module")
def keystone_user_rotation(
    lab: Lab, member: Cli, admin_env: dict[str, str]
) -> Iterator[KeystoneUserRotation]:
    endpoints = lab.model["endpoints"]
    # A member's token on the config API; an admin's on the collector (may read /status).
    urls = {
        "config API, member": endpoints["api_url"] + "/projects",
        "collector, admin": endpoints["analytics_url"] + "/status",
    }
    envs = {"config API, member": member.env, "collector, admin": admin_env}
    before, pids = secrets_file(), unit_pids(lab)
    poller = KeystonePoller(urls, envs=envs)
    out = rotate_while_polling(poller, "sdn_keystone")
    yield KeystoneUserRotation(
        before, secrets_file(), out.stdout + out.stderr, poller, (pids, unit_pids(lab)),
        member.env,
    )  # fmt: skip


def test_the_apis_use_the_other_keystone_user_now(
    keystone_user_rotation: KeystoneUserRotation,
) -> None:
    r = keystone_user_rotation
    was, now = ks_slot(r.before), ks_slot(r.after)
    assert now != was, f"still slot {was}: the switch was not recorded"
    assert ks_password(r.after, was) != ks_password(r.before, was), "the old user kept its password"
    assert ks_password(r.after, now) != ks_password(r.before, now)
    extra = {KS + "_b", KS + "_active"}
    others = sorted(k for k in r.before if k not in extra | {KS} and r.after.get(k) != r.before[k])
    assert not others, f"other secrets changed: {others}"
    values = [v for v in (*r.before.values(), *r.after.values()) if len(v) >= 16]
    shown = [v for v in values if v in r.output]
    assert not shown, f"the playbook's output shows {len(shown)} secret values"


def test_the_sdn_apis_validated_every_token_during_the_switch(
    keystone_user_rotation: KeystoneUserRotation,
) -> None:
    no_failed_answer(keystone_user_rotation.poller, "keystone user rotation")


def test_a_members_token_is_accepted_after_the_switch(
    keystone_user_rotation: KeystoneUserRotation, lab: Lab
) -> None:
    token = issue_token(keystone_user_rotation.member_env, catalog=False)[0]
    assert get(lab.model["endpoints"]["api_url"] + "/projects", token) == 200


def test_the_sdn_apis_reloaded_rather_than_restarted(
    keystone_user_rotation: KeystoneUserRotation,
) -> None:
    before, after = keystone_user_rotation.pids
    moved = {u: (before[u], after.get(u)) for u in before if after.get(u) != before[u]}
    assert not moved, f"restarted (main PID before, after): {moved}"


def test_the_old_password_no_longer_logs_in(
    keystone_user_rotation: KeystoneUserRotation, admin_env: dict[str, str]
) -> None:
    r = keystone_user_rotation
    was, now = ks_slot(r.before), ks_slot(r.after)
    old = ks_password(r.before, was)
    assert old is not None
    assert service_login(admin_env, KS_USERS[was], old) == 401
    assert service_login(admin_env, KS_USERS[was], str(ks_password(r.after, was))) == 201
    assert service_login(admin_env, KS_USERS[now], str(ks_password(r.after, now))) == 201
