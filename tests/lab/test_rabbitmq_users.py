"""One RabbitMQ user per OpenStack service on the deployed lab (issue 11, docs/security.md).

- RabbitMQ has `nova` and `neutron` (and the SDN's `vrstack`), each with rights on one
  virtual host only; the user they shared before, `openstack`, and `guest` are gone.
- nova (controllers and computes) and neutron log in with their own users: their configs
  and nova's cell mapping name them, and RabbitMQ's connections are theirs.
- A real AMQP 0-9-1 login over TLS from a controller: each service's password opens its own
  user on `openstack`; it does not open the other service's user, and a user cannot open
  another virtual host.

Passwords go to the nodes on stdin, never on a command line, and no assertion message
shows one (nor a config line, which holds them).
"""

from __future__ import annotations

import json
import shlex
from typing import Any

import test_security as security
from test_security import Lab, Node, on_node, secrets_file

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition

CA = "/etc/vrstack/pki/ca.crt"
SERVICE_USERS = {"nova": "rabbitmq_nova_password", "neutron": "rabbitmq_neutron_password"}
OLD_USER = ("openstack", "rabbitmq_openstack_password")

# Run on a node: AMQP 0-9-1 over TLS to host:port (the server checked against the CA), one
# connection per attempt [user, password, vhost] read from stdin: the PLAIN login, then
# Connection.Open of the virtual host. Prints one outcome per attempt: "open", "refused
# CODE" / "refused" (the server closed the connection at the login), "vhost refused CODE".
AMQP_SCRIPT = r"""
import json, socket, ssl, struct, sys

host, port, ca = sys.argv[1], int(sys.argv[2]), sys.argv[3]

def shortstr(text):
    raw = text.encode()
    return bytes([len(raw)]) + raw

def table(fields):
    return struct.pack(">I", len(fields)) + fields

def method(cls, mid, args):
    payload = struct.pack(">HH", cls, mid) + args
    return struct.pack(">BHI", 1, 0, len(payload)) + payload + b"\xce"

def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("closed")
        data += chunk
    return data

def next_method(sock):
    while True:
        ftype, chan, size = struct.unpack(">BHI", recv_exact(sock, 7))
        payload = recv_exact(sock, size + 1)[:-1]
        if ftype == 1:  # a method frame; heartbeats (8) are skipped
            return struct.unpack(">HH", payload[:4]), payload[4:]

CLOSED = (EOFError, ConnectionError, ssl.SSLError, socket.timeout)

# (None, arguments) when the next method is `want`, else (what happened, None): `refused`
# with the reply code of a Connection.Close, or alone when the server hung up.
def answer(sock, want, refused):
    try:
        cm, args = next_method(sock)
    except CLOSED:
        return refused, None
    if cm == (10, 50):
        return "%s %d" % (refused, struct.unpack(">H", args[:2])[0]), None
    if cm != want:
        return "unexpected %r instead of %r" % (cm, want), None
    return None, args

def attempt(user, password, vhost):
    ctx = ssl.create_default_context(cafile=ca)
    with socket.create_connection((host, port), timeout=15) as raw:
        with ctx.wrap_socket(raw, server_hostname=host) as sock:
            sock.sendall(b"AMQP\x00\x00\x09\x01")
            cm, args = next_method(sock)
            if cm != (10, 10):
                return "unexpected %r before the login" % (cm,)
            # Asks RabbitMQ to say why it refuses a login (Connection.Close) rather than
            # just closing the socket.
            caps = shortstr("authentication_failure_close") + b"t\x01"
            props = table(shortstr("capabilities") + b"F" + table(caps))
            plain = b"\x00" + user.encode() + b"\x00" + password.encode()
            sock.sendall(method(10, 11, props + shortstr("PLAIN") + struct.pack(">I", len(plain))
                                + plain + shortstr("en_US")))
            failed, args = answer(sock, (10, 30), "refused")  # Connection.Tune
            if failed:
                return failed
            channel_max, frame_max, heartbeat = struct.unpack(">HIH", args[:8])
            sock.sendall(method(10, 31, struct.pack(">HIH", channel_max, frame_max, 0)))
            sock.sendall(method(10, 40, shortstr(vhost) + shortstr("") + b"\x00"))
            failed, args = answer(sock, (10, 41), "vhost refused")  # Connection.Open-Ok
            if failed:
                return failed
            sock.sendall(method(10, 50, struct.pack(">H", 200) + shortstr("bye") + struct.pack(">HH", 0, 0)))
            return "open"

out = []
for user, password, vhost in json.load(sys.stdin):
    try:
        out.append(attempt(user, password, vhost))
    except ssl.SSLCertVerificationError as exc:
        out.append("tls: " + exc.verify_message)
    except CLOSED as exc:
        out.append("error " + type(exc).__name__)
print(json.dumps(out))
"""


def amqp_logins(lab: Lab, node: Node, server: Node, attempts: list[list[str]]) -> list[str]:
    """What each [user, password, vhost] gets from server's AMQP over TLS, tried on node."""
    script = f"python3 -c {shlex.quote(AMQP_SCRIPT)} {server.ip} 5671 {CA}"
    out = on_node(lab, node, script, stdin=json.dumps(attempts))
    assert out.returncode == 0, f"{node.name}: {out.stderr.strip()[-1500:]}"
    return list(json.loads(out.stdout))


def rabbitmqctl(lab: Lab, node: Node, *args: str) -> Any:
    out = on_node(lab, node, shlex.join(["rabbitmqctl", "--quiet", "--formatter", "json", *args]))
    assert out.returncode == 0, f"{node.name}: rabbitmqctl {args[0]}: {out.stderr.strip()[-800:]}"
    return json.loads(out.stdout)


def test_one_user_per_service_each_on_one_vhost(lab: Lab) -> None:
    node = lab.by_role("messaging")[0]
    users = {u["user"] for u in rabbitmqctl(lab, node, "list_users")}
    assert {"nova", "neutron"} <= users, f"{node.name}: users {sorted(users)}"
    assert OLD_USER[0] not in users, f"{node.name}: the shared user is still there"
    assert "guest" not in users
    for user in SERVICE_USERS:
        perms = rabbitmqctl(lab, node, "list_user_permissions", user)
        assert perms == [{"vhost": "openstack", "configure": ".*", "write": ".*", "read": ".*"}], (
            f"{node.name}: {user} has {perms}"
        )


def test_services_are_connected_with_their_own_users(lab: Lab) -> None:
    node = lab.by_role("messaging")[0]
    conns = rabbitmqctl(lab, node, "list_connections", "user", "peer_host", "vhost")
    by_user: dict[str, set[str]] = {}
    for conn in conns:
        # rabbitmqctl's JSON gives an IPv4 peer as its four octets.
        peer = ".".join(map(str, conn["peer_host"]))
        by_user.setdefault(conn["user"], set()).add(peer)
        if conn["user"] in SERVICE_USERS:
            assert conn["vhost"] == "openstack", f"{conn['user']} on {conn['vhost']}"
    assert OLD_USER[0] not in by_user, f"still logged in as openstack: {by_user[OLD_USER[0]]}"
    controllers = {n.ip for n in lab.by_role("controller")}
    computes = {n.ip for n in lab.by_role("compute")}
    # nova-conductor and nova-scheduler on the controllers, nova-compute on every compute.
    nova = by_user.get("nova", set())
    assert controllers <= nova and computes <= nova, f"nova logs in from {sorted(nova)}"
    # neutron only talks to RabbitMQ when it has something to send: from controllers only.
    assert by_user.get("neutron", set()) <= controllers, f"neutron from {by_user.get('neutron')}"


# Run on a node: the user names in each config's transport URL (never the passwords).
CONF_USERS_SCRIPT = r"""
import configparser, json, sys
from urllib.parse import unquote
out = {}
for path in sys.argv[1:]:
    p = configparser.RawConfigParser(strict=False)
    with open(path) as f:
        p.read_file(f)
    url = p.get("DEFAULT", "transport_url")
    nodes = url.split("://", 1)[1].rsplit("/", 1)[0].split(",")
    out[path] = sorted({unquote(n.rpartition("@")[0].split(":", 1)[0]) for n in nodes})
print(json.dumps(out))
"""


def conf_users(lab: Lab, node: Node, paths: list[str]) -> dict[str, list[str]]:
    out = on_node(lab, node, f"python3 -c {shlex.quote(CONF_USERS_SCRIPT)} {' '.join(paths)}")
    assert out.returncode == 0, f"{node.name}: {out.stderr.strip()[-800:]}"
    return dict(json.loads(out.stdout))


def test_configs_and_the_cell_mapping_name_each_service_user(lab: Lab) -> None:
    for node in lab.by_role("controller"):
        got = conf_users(lab, node, ["/etc/nova/nova.conf", "/etc/neutron/neutron.conf"])
        assert got == {"/etc/nova/nova.conf": ["nova"], "/etc/neutron/neutron.conf": ["neutron"]}, (
            f"{node.name}: {got}"
        )
    for node in lab.by_role("compute"):
        got = conf_users(lab, node, ["/etc/nova/nova.conf"])
        assert got == {"/etc/nova/nova.conf": ["nova"]}, f"{node.name}: {got}"
    # The cell's transport URL lives in the API database (nova-api casts to the cell with
    # it). Without --verbose nova-manage masks the password.
    ctl = lab.by_role("controller")[0]
    manage = "/opt/openstack/venv/bin/nova-manage --config-file /etc/nova/nova.conf"
    out = on_node(lab, ctl, f"{manage} cell_v2 list_cells 2>/dev/null")
    assert out.returncode == 0, f"{ctl.name}: nova-manage cell_v2 list_cells failed"
    rows = [
        [c.strip() for c in line.strip().strip("|").split("|")]
        for line in out.stdout.splitlines()
        if line.startswith("|") and "cell1" in line
    ]
    assert len(rows) == 1, f"{ctl.name}: cell1 rows: {len(rows)}"
    transport = rows[0][2]
    users = {n.rpartition("@")[0].split(":", 1)[0] for n in transport.split("://", 1)[1].split(",")}
    assert users == {"nova"}, f"cell1 transport users: {users}"


def test_each_password_opens_only_its_own_user(lab: Lab) -> None:
    sec = secrets_file()
    # (user, whose password, virtual host) -> what the server answers.
    cases = {
        ("nova", "nova", "openstack"): "open",
        ("neutron", "neutron", "openstack"): "open",
        # Another service's password: 403 ACCESS_REFUSED at the login.
        ("neutron", "nova", "openstack"): "refused 403",
        ("nova", "neutron", "openstack"): "refused 403",
        # A virtual host the user has no rights on: 530 NOT_ALLOWED at Connection.Open.
        ("nova", "nova", "vrstack"): "vhost refused 530",
    }
    secret = dict(SERVICE_USERS)
    if OLD_USER[1] in sec:  # the deploy host keeps the retired user's secret
        secret[OLD_USER[0]] = OLD_USER[1]
        cases[(OLD_USER[0], OLD_USER[0], "openstack")] = "refused 403"
    tries = [[user, sec[secret[owner]], vhost] for user, owner, vhost in cases]
    ctl = lab.by_role("controller")[0]
    for server in lab.by_role("messaging"):
        got = dict(zip(cases, amqp_logins(lab, ctl, server, tries), strict=True))
        assert got == cases, f"{ctl.name} -> {server.name}:5671"
