"""MariaDB and RabbitMQ over TLS on the deployed lab (issue 11, docs/security.md).

- A service's database user with its real password is refused over a plain connection
  and logs in over TLS, the server verified against the deployment CA.
- AMQP: nothing answers on 5672 from the fabric (no listener, firewall closed); 5671
  answers TLS with a certificate the deployment CA verifies, and the system CAs do not.
- The services' configs name the CA (database URLs, oslo.messaging, the collector's store),
  and the servers' users may read the node key.

Passwords go to the nodes on stdin, never on a command line, and no assertion message
shows a config line (they hold passwords).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys

import pytest
import test_security as security
from labcloud import STATE
from test_security import Lab, Node, listening_tcp, on_node, secrets_file

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition

CA = "/etc/vrstack/pki/ca.crt"
# Database user -> the secret holding its password (the roles' defaults).
DB_USERS = {
    "keystone": "keystone_db_password",
    "glance": "glance_db_password",
    "placement": "placement_db_password",
    "nova": "nova_controller_db_password",
    "neutron": "neutron_server_db_password",
}
ANALYTICS_DB_USER = ("vrstack_analytics", "sdn_analytics_db_password")

# Run on a database node: each user logs in over TCP to the node's fabric address, plain
# then TLS (PyMySQL checks the certificate and the address against the CA).
LOGIN_SCRIPT = r"""
import json, sys
import pymysql
host, ca = sys.argv[1], sys.argv[2]
out = {}
for user, password in json.load(sys.stdin).items():
    got = {}
    try:
        # ssl_disabled: newer PyMySQL tries TLS unasked.
        pymysql.connect(host=host, user=user, password=password, connect_timeout=10,
                        ssl_disabled=True).close()
        got["plain"] = "accepted"
    except pymysql.err.OperationalError as exc:
        got["plain"] = exc.args[0]
    try:
        db = pymysql.connect(host=host, user=user, password=password, connect_timeout=10,
                             ssl={"ca": ca})
        with db.cursor() as cur:
            cur.execute("SHOW SESSION STATUS LIKE 'Ssl_version'")
            got["tls"] = cur.fetchone()[1]
        db.close()
    except pymysql.err.MySQLError as exc:
        got["tls"] = "error %s" % (exc.args[0],)
    out[user] = got
print(json.dumps(out))
"""


def test_database_users_need_tls_and_the_server_verifies(lab: Lab) -> None:
    node = lab.by_role("database")[0]
    sec = secrets_file()
    users = {user: sec[name] for user, name in DB_USERS.items()}
    if len(lab.by_role("analytics")) > 1:  # the collectors share a MariaDB store then
        users[ANALYTICS_DB_USER[0]] = sec[ANALYTICS_DB_USER[1]]
    script = f"python3 -c {shlex.quote(LOGIN_SCRIPT)} {node.ip} {CA}"
    out = on_node(lab, node, script, stdin=json.dumps(users))
    assert out.returncode == 0, f"{node.name}: {out.stderr.strip()[-1500:]}"
    got = json.loads(out.stdout)
    for user in users:
        # 1045: access denied - the right password, but REQUIRE SSL.
        assert got[user]["plain"] == 1045, f"{user}: a plain login got {got[user]['plain']}"
        assert got[user]["tls"] in ("TLSv1.2", "TLSv1.3"), f"{user}: TLS login: {got[user]['tls']}"


def _amqp(netns: str, ip: str, port: int, cafile: str) -> dict[str, str]:
    """From a node's namespace: AMQP's header to ip:port, over TLS when cafile is set
    ('' for the system CAs); returns what happened."""
    script = r"""
import json, socket, ssl, sys
ip, port, tls, cafile = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "tls", sys.argv[4]
res = {}
try:
    sock = socket.create_connection((ip, port), timeout=5)
    sock.settimeout(5)
    if tls:
        ctx = ssl.create_default_context(cafile=cafile or None)
        sock = ctx.wrap_socket(sock, server_hostname=ip)
        res["version"] = sock.version()
    sock.sendall(b"AMQP\x00\x00\x09\x01")
    data = b""
    while b"RabbitMQ" not in data and len(data) < 65536:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    res["answer"] = "RabbitMQ" if b"RabbitMQ" in data else repr(data[:40])
except ssl.SSLCertVerificationError as exc:
    res["error"] = "verify: " + exc.verify_message
except OSError as exc:
    res["error"] = type(exc).__name__
print(json.dumps(res))
"""
    mode = "tls" if cafile is not None else "plain"
    cmd = ["ip", "netns", "exec", netns, sys.executable, "-c", script, ip, str(port), mode,
           cafile or ""]  # fmt: skip
    out = subprocess.run(cmd, text=True, capture_output=True, timeout=60, check=False)
    assert out.returncode == 0, f"{netns}: {out.stderr.strip()[-1500:]}"
    return json.loads(out.stdout)


def test_amqp_only_over_tls_verified_by_the_ca(lab: Lab) -> None:
    compute = lab.by_role("compute")[0]
    for node in lab.by_role("messaging"):
        listening = listening_tcp(lab, node)
        assert 5671 in listening, f"{node.name}: nothing listens on 5671"
        assert 5672 not in listening, f"{node.name}: the plain AMQP listener is on"
        plain = _amqp(compute.netns, node.ip, 5672, None)
        assert "answer" not in plain or plain["answer"] != "RabbitMQ", f"{node.name}:5672 {plain}"
        tls = _amqp(compute.netns, node.ip, 5671, str(STATE / "ca.crt"))
        assert tls.get("answer") == "RabbitMQ", f"{node.name}:5671 with the CA: {tls}"
        assert tls["version"] in ("TLSv1.2", "TLSv1.3")
        # The certificate is the deployment CA's, not one any client would take.
        system = _amqp(compute.netns, node.ip, 5671, "")
        assert system.get("error", "").startswith("verify:"), f"{node.name}:5671 {system}"


# Run on a node: which settings name the CA (booleans only: the files hold passwords).
CONF_SCRIPT = r"""
import configparser, json, sys
ca = sys.argv[1]
out = {}
for path in sys.argv[2:]:
    p = configparser.RawConfigParser(strict=False)
    try:
        with open(path) as f:
            p.read_file(f)
    except OSError as exc:
        out[path] = {"error": exc.strerror}
        continue
    got = {}
    for section in ("database", "api_database", "placement_database"):
        if p.has_option(section, "connection"):
            got[section] = p.get(section, "connection").endswith("&ssl_ca=" + ca)
    if p.has_option("DEFAULT", "transport_url"):
        urls = p.get("DEFAULT", "transport_url")
        hosts = urls.split("://", 1)[1].rsplit("/", 1)[0].split(",")
        got["transport_port_5671"] = all(h.endswith(":5671") for h in hosts)
        got["rabbit_ssl"] = p.get("oslo_messaging_rabbit", "ssl", fallback="") == "true"
        got["rabbit_ca"] = p.get("oslo_messaging_rabbit", "ssl_ca_file", fallback="") == ca
    out[path] = got
print(json.dumps(out))
"""

CONTROLLER_CONFS = [
    "/etc/keystone/keystone.conf",
    "/etc/glance/glance-api.conf",
    "/etc/placement/placement.conf",
    "/etc/nova/nova.conf",
    "/etc/neutron/neutron.conf",
]


def _confs(where: Lab, node: Node, paths: list[str]) -> dict[str, dict[str, bool]]:
    script = f"python3 -c {shlex.quote(CONF_SCRIPT)} {CA} {' '.join(paths)}"
    out = on_node(where, node, script)
    assert out.returncode == 0, f"{node.name}: {out.stderr.strip()[-1500:]}"
    return json.loads(out.stdout)


def test_services_configs_name_the_ca(lab: Lab) -> None:
    for node in lab.by_role("controller"):
        got = _confs(lab, node, CONTROLLER_CONFS)
        for path, settings in got.items():
            assert settings and "error" not in settings, f"{node.name}:{path}: {settings}"
            assert all(settings.values()), f"{node.name}:{path}: {settings}"
        assert set(got["/etc/nova/nova.conf"]) >= {"database", "api_database", "rabbit_ssl"}
        assert got["/etc/neutron/neutron.conf"].get("rabbit_ca") is True
    for node in lab.by_role("compute"):
        got = _confs(lab, node, ["/etc/nova/nova.conf"])["/etc/nova/nova.conf"]
        assert got == {"transport_port_5671": True, "rabbit_ssl": True, "rabbit_ca": True}, (
            f"{node.name}: {got}"
        )
    if len(lab.by_role("analytics")) > 1:
        for node in lab.by_role("analytics"):
            out = on_node(lab, node, "grep -A2 -E '^  tls:' /etc/vrstack/collector.yaml")
            assert f'ca: "{CA}"' in out.stdout, f"{node.name}: collector store without the CA"


@pytest.mark.parametrize(("role", "user"), [("database", "mysql"), ("messaging", "rabbitmq")])
def test_servers_read_the_node_key_through_the_pki_group(lab: Lab, role: str, user: str) -> None:
    for node in lab.by_role(role):
        out = on_node(lab, node, f"id -nG {user}; stat -c '%G %a' /etc/vrstack/pki/node.key")
        groups, key = out.stdout.splitlines()
        assert "vrstack" in groups.split(), f"{node.name}: {user} is in {groups}"
        assert key == "vrstack 640", f"{node.name}: node.key is {key}"
