"""MariaDB and RabbitMQ over TLS (issue 11): the servers' and the clients' configs as the
roles render them for the lab inventory's hosts (Ansible's own templar, the fabric
inventory plugin's host vars), with TLS on (the default) and off (vrstack_infra_tls).

Every generated secret is replaced by a fixed string, so nothing is written to the
deploy host's secrets file."""

from __future__ import annotations

import configparser
import re
import ssl
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from ipaddress import ip_address
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible.template import trust_as_template
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

ROOT = Path(__file__).resolve().parents[3]
# The SDN roles' render helper (roles' defaults and vars over a host's inventory vars).
sys.path.insert(0, str(ROOT / "tests" / "unit" / "plugins" / "modules"))
from test_sdn_roles_render import render_vars  # noqa: E402

from ansible_collections.vrstack.cloud.plugins.module_utils.service_probe import (  # noqa: E402
    ProbeError,
    probe,
)

LAB_INV = ROOT / "inventories" / "lab"
CA = "/etc/vrstack/pki/ca.crt"
SECRET = re.compile(r"lookup\('vrstack\.cloud\.secret', '([a-z0-9_]+)'")


class Render:
    """render_vars for one lab host, every secret replaced by `secret-<name>`, then `extra`."""

    def __init__(self, host: str, roles: list[str], **extra: Any) -> None:
        self.templar = render_vars(LAB_INV, host, roles)
        variables = dict(self.templar.available_variables)
        for name, value in list(variables.items()):
            found = SECRET.search(value) if isinstance(value, str) else None
            if found:
                variables[name] = f"secret-{found.group(1)}"
        variables.setdefault("ansible_check_mode", False)
        self.templar.available_variables = variables | extra

    def var(self, name: str) -> Any:
        return self.templar.template(trust_as_template("{{ " + name + " }}"))

    def template(self, role: str, name: str) -> str:
        text = (ROOT / "roles" / role / "templates" / name).read_text()
        return str(self.templar.template(trust_as_template(text)))


def ini(text: str) -> configparser.RawConfigParser:
    parser = configparser.RawConfigParser(strict=False)
    parser.read_string(text)
    return parser


CERT_STAT = {"stat": {"exists": True, "checksum": "c0ffee"}}


# ---- servers ---------------------------------------------------------------------------


def test_mariadb_server_uses_the_node_certificate_and_names_its_checksum() -> None:
    cnf = Render("lab-ctl1", ["mariadb"], pki_service_cert=CERT_STAT).template(
        "mariadb", "vrstack.cnf.j2"
    )
    for line in (
        "ssl_cert = /etc/vrstack/pki/node.crt",
        "ssl_key = /etc/vrstack/pki/node.key",
        f"ssl_ca = {CA}",
    ):
        assert line in cnf.splitlines()
    # A renewed certificate changes the config, which restarts the server.
    assert "# c0ffee" in cnf.splitlines()
    off = Render("lab-ctl1", ["mariadb"], vrstack_infra_tls=False).template(
        "mariadb", "vrstack.cnf.j2"
    )
    assert "ssl_" not in off


def test_galera_replication_tls_unless_switched_off() -> None:
    three = {"groups": {"database": ["a", "b", "c"], "all": ["a", "b", "c"]}}
    hostvars = {h: {"vrstack_fabric_ip": f"198.18.1.{n}"} for n, h in enumerate("abc", 11)}
    base = {"pki_service_cert": CERT_STAT, "hostvars": hostvars, **three}
    plain = Render("lab-ctl1", ["mariadb"], mariadb_galera_tls=False, **base).template(
        "mariadb", "vrstack.cnf.j2"
    )
    assert "wsrep_on = ON" in plain and "wsrep_provider_options" not in plain
    tls = Render("lab-ctl1", ["mariadb"], **base).template("mariadb", "vrstack.cnf.j2")
    opts = re.search(r'^wsrep_provider_options = "(.*)"$', tls, re.M)
    assert opts, tls
    assert sorted(opts.group(1).split(";")) == [
        "socket.ssl=YES",
        f"socket.ssl_ca={CA}",
        "socket.ssl_cert=/etc/vrstack/pki/node.crt",
        "socket.ssl_key=/etc/vrstack/pki/node.key",
    ]
    # tests/unit/roles/test_galera_tls_render.py has the rest (SST, the switch, packages).


# The service users' SQL (REQUIRE SSL or NONE): tests/unit/plugins/modules/test_mariadb_database.py.


def test_haproxy_check_user_stays_plain() -> None:
    r = Render("lab-ctl1", ["mariadb"], __mariadb_apply=True, mariadb_check_hosts=["198.18.1.16"])
    sql = r.template("mariadb", "check_user.sql.j2")
    assert "CREATE USER 'haproxy_check'@'198.18.1.16';" in sql
    assert "REQUIRE" not in sql and "GRANT" not in sql


def _rabbitmq_conf(**extra: Any) -> dict[str, str]:
    r = Render("lab-ctl1", ["rabbitmq"], pki_service_cert=CERT_STAT, **extra)
    text = r.template("rabbitmq", "rabbitmq.conf.j2")
    pairs = [line.split(" = ", 1) for line in text.splitlines() if " = " in line]
    return {k: v for k, v in pairs if not k.startswith("#")}


def test_rabbitmq_listens_only_over_tls_with_the_node_certificate() -> None:
    conf = _rabbitmq_conf()
    ip = Render("lab-ctl1", ["rabbitmq"]).var("vrstack_fabric_ip")
    assert conf["listeners.tcp"] == "none"
    assert "listeners.tcp.1" not in conf
    assert conf["listeners.ssl.1"] == f"{ip}:5671"
    assert conf["ssl_options.certfile"] == "/etc/vrstack/pki/node.crt"
    assert conf["ssl_options.keyfile"] == "/etc/vrstack/pki/node.key"
    assert conf["ssl_options.cacertfile"] == CA
    r = Render("lab-ctl1", ["rabbitmq"])
    assert r.var("__rabbitmq_amqp_port") == 5671
    assert r.var("__rabbitmq_probe_ca") == CA


def test_rabbitmq_without_tls_is_plain_on_5672() -> None:
    conf = _rabbitmq_conf(vrstack_infra_tls=False)
    assert "listeners.ssl.1" not in conf and "listeners.tcp" not in conf
    assert conf["listeners.tcp.1"].endswith(":5672")
    r = Render("lab-ctl1", ["rabbitmq"], vrstack_infra_tls=False)
    assert r.var("__rabbitmq_amqp_port") == 5672
    assert r.var("__rabbitmq_probe_ca") == ""


def test_firewall_opens_the_amqp_port_in_use() -> None:
    def ports(**extra: Any) -> list[str]:
        r = Render("lab-ctl1", ["firewall"], **extra)
        rules = r.var("__firewall_rules")
        return [p for rule in rules if rule["name"] == "rabbitmq" for p in rule["ports"]]

    assert ports() == ["5671"]
    assert ports(vrstack_infra_tls=False) == ["5672"]


# ---- clients ---------------------------------------------------------------------------

DB_CLIENTS = [
    ("keystone", "keystone.conf.j2", "keystone"),
    ("glance", "glance-api.conf.j2", "glance"),
    ("placement", "placement.conf.j2", "placement"),
    ("neutron_server", "neutron.conf.j2", "neutron"),
]


@pytest.mark.parametrize(("role", "template", "db"), DB_CLIENTS)
def test_openstack_database_urls_verify_the_server(role: str, template: str, db: str) -> None:
    section = "placement_database" if role == "placement" else "database"
    conf = ini(Render("lab-ctl1", [role]).template(role, template))
    url = conf.get(section, "connection")
    assert url.startswith(f"mysql+pymysql://{db}:secret-")
    assert url.endswith(f"/{db}?charset=utf8mb4&ssl_ca={CA}")
    off = ini(Render("lab-ctl1", [role], vrstack_infra_tls=False).template(role, template))
    assert off.get(section, "connection").endswith(f"/{db}?charset=utf8mb4")


def _nova(host: str, **extra: Any) -> configparser.RawConfigParser:
    r = Render(host, ["nova_controller"], nova_controller_hosts=["lab-ctl1"], **extra)
    return ini(r.template("nova_controller", "nova.conf.j2"))


def test_nova_controller_and_compute_use_amqp_over_tls() -> None:
    for host in ("lab-ctl1", "lab-cmp1"):
        conf = _nova(host)
        assert conf.get("oslo_messaging_rabbit", "ssl") == "true"
        assert conf.get("oslo_messaging_rabbit", "ssl_ca_file") == CA
        url = conf.get("DEFAULT", "transport_url")
        # nova's own user, the same on controllers and computes (they share the cell's queues).
        assert re.fullmatch(
            r"rabbit://nova:secret-rabbitmq_nova_password@198\.18\.1\.\d+:5671/openstack", url
        )
    ctl = _nova("lab-ctl1")
    for section, db in (("api_database", "nova_api"), ("database", "nova")):
        assert ctl.get(section, "connection").endswith(f"/{db}?charset=utf8mb4&ssl_ca={CA}")
    off = _nova("lab-cmp1", vrstack_infra_tls=False)
    assert not off.has_option("oslo_messaging_rabbit", "ssl")
    assert off.get("DEFAULT", "transport_url").endswith(":5672/openstack")


def _format_like_nova(template: str, default: str) -> str:
    """What nova's CellMapping does with a templated URL when it reads it."""
    from urllib.parse import urlparse

    u = urlparse(default)
    subs = {"username": u.username, "password": u.password, "hostname": u.hostname}
    subs |= {"scheme": u.scheme, "query": u.query, "path": u.path.lstrip("/")}
    return template.format(**subs)


def test_cell_mapping_templates_give_the_configured_urls() -> None:
    r = Render("lab-ctl1", ["nova_controller"], nova_controller_db_password="p@ss:w%rd")
    conf_url = r.var("__nova_controller_db_base ~ 'nova' ~ __nova_controller_db_query")
    assert conf_url.endswith(f"?charset=utf8mb4&ssl_ca={CA}")
    assert "p%40ss" in conf_url  # the password stays URL-encoded
    assert _format_like_nova(r.var("__nova_controller_cell_db_template"), conf_url) == conf_url
    cell0 = _format_like_nova(r.var("__nova_controller_cell0_db_template"), conf_url)
    assert cell0 == r.var("__nova_controller_db_base ~ 'nova_cell0' ~ __nova_controller_db_query")


def test_a_cell_mapped_with_the_shared_rabbitmq_user_is_updated() -> None:
    # database.yml includes cells.yml (the schema and cell steps) on the first controller.
    block = yaml.safe_load((ROOT / "roles/nova_controller/tasks/cells.yml").read_text())
    task = next(t for t in block if t["name"].startswith("Point the mapped cells"))
    r = Render("lab-ctl1", ["nova_controller"], nova_controller_hosts=["lab-ctl1"])
    db = r.var("__nova_controller_db_base ~ nova_controller_db_name ~ __nova_controller_db_query")
    new = r.var("__nova_controller_transport_url")
    assert new.startswith("rabbit://nova:")
    old = new.replace(
        "nova:secret-rabbitmq_nova_password@", "openstack:secret-rabbitmq_openstack_password@"
    )
    assert old != new

    def due(url: str) -> bool:
        item = ["cell1", "0" * 8 + "-0000-0000-0000-" + "0" * 12, url, db]
        r.templar.available_variables = dict(r.templar.available_variables) | {"item": item}
        return bool(r.var("(" + task["when"] + ")"))

    assert due(old)
    assert not due(new)


def test_nova_schema_stamp_names_the_message_queue_but_not_its_password() -> None:
    def inputs(**extra: Any) -> str:
        r = Render("lab-ctl1", ["nova_controller"], nova_controller_hosts=["lab-ctl1"], **extra)
        return str(r.var("__nova_controller_schema_inputs"))

    now = inputs()
    assert re.fullmatch(
        r"cell cell1 tls True mq rabbit://nova:@198\.18\.1\.\d+:5671/openstack", now
    )
    assert "secret" not in now  # the stamp file is world-readable
    # A stamp written with the shared user no longer matches: the next run updates the cell.
    assert inputs(nova_controller_rabbitmq_user="openstack") != now


def test_neutron_uses_amqp_over_tls() -> None:
    conf = ini(Render("lab-ctl1", ["neutron_server"]).template("neutron_server", "neutron.conf.j2"))
    assert conf.get("oslo_messaging_rabbit", "ssl") == "true"
    assert conf.get("oslo_messaging_rabbit", "ssl_ca_file") == CA
    # neutron's own user, not nova's.
    assert re.fullmatch(
        r"rabbit://neutron:secret-rabbitmq_neutron_password@198\.18\.1\.\d+:5671/openstack",
        conf.get("DEFAULT", "transport_url"),
    )
    off = Render("lab-ctl1", ["neutron_server"], vrstack_infra_tls=False)
    url = ini(off.template("neutron_server", "neutron.conf.j2")).get("DEFAULT", "transport_url")
    assert url.startswith("rabbit://neutron:") and url.endswith(":5672/openstack")


def test_one_rabbitmq_user_per_openstack_service_each_on_one_vhost() -> None:
    r = Render("lab-ctl1", ["rabbitmq"])
    users = {u["name"]: u["vhost"] for u in r.var("rabbitmq_users")}
    assert users == {"vrstack": "vrstack", "nova": "openstack", "neutron": "openstack"}
    assert r.var("__rabbitmq_vhosts") == ["vrstack", "openstack"]
    # The shared user goes at the end of the OpenStack stage, not with the others.
    assert r.var("rabbitmq_retired_users") == ["openstack"]
    # Every client's user is one the rabbitmq role makes, on the vhost it makes it on.
    nova = Render("lab-ctl1", ["nova_controller"])
    neutron = Render("lab-ctl1", ["neutron_server"])
    assert users[nova.var("nova_controller_rabbitmq_user")] == nova.var(
        "nova_controller_rabbitmq_vhost"
    )
    assert users[neutron.var("neutron_server_rabbitmq_user")] == neutron.var(
        "neutron_server_rabbitmq_vhost"
    )


def test_analytics_mariadb_store_verifies_the_server() -> None:
    extra = {"pki_service_cert": CERT_STAT, "__sdn_analytics_cert": CERT_STAT}
    r = Render("lab-ctl2", ["sdn_analytics"], **extra)
    assert r.var("sdn_analytics_store") == "mariadb"  # two analytics hosts in the lab
    store = yaml.safe_load(r.template("sdn_analytics", "collector.yaml.j2"))["store"]
    assert store["backend"] == "mariadb"
    assert store["tls"] == {"ca": CA}
    off = Render("lab-ctl2", ["sdn_analytics"], vrstack_infra_tls=False, **extra)
    assert "tls" not in yaml.safe_load(off.template("sdn_analytics", "collector.yaml.j2"))["store"]


# ---- the TLS probe (vrstack.cloud.service_probe) ----------------------------------------


def _cert(subject: str, issuer_key: Any, issuer: x509.Name | None, ip: str | None, ca: bool):
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    now = datetime.now(UTC)
    b = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer or name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ip:
        b = b.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ip_address(ip))]), False)
    return key, b.sign(issuer_key or key, hashes.SHA256())


def _pem(tmp: Path, name: str, obj: Any) -> Path:
    path = tmp / name
    if isinstance(obj, x509.Certificate):
        path.write_bytes(obj.public_bytes(serialization.Encoding.PEM))
    else:
        fmt = serialization.PrivateFormat.PKCS8
        path.write_bytes(
            obj.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
        )
    return path


@pytest.fixture
def amqp_tls_server(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """A TLS server on 127.0.0.1 that answers an AMQP header like RabbitMQ; yields the
    port, its CA and another CA."""
    ca_key, ca = _cert("test CA", None, None, None, True)
    key, cert = _cert("node", ca_key, ca.subject, "127.0.0.1", False)
    _other_key, other = _cert("other CA", None, None, None, True)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(_pem(tmp_path, "node.crt", cert), _pem(tmp_path, "node.key", key))
    import socket

    srv = socket.create_server(("127.0.0.1", 0))
    port = srv.getsockname()[1]

    def serve() -> None:
        while True:
            try:
                conn, _addr = srv.accept()
            except OSError:
                return
            try:
                with ctx.wrap_socket(conn, server_side=True) as tls:
                    if tls.recv(8) == b"AMQP\x00\x00\x09\x01":
                        tls.sendall(b"\x01\x00\x00product\x00RabbitMQ")
            except (OSError, ssl.SSLError):
                pass

    threading.Thread(target=serve, daemon=True).start()
    yield port, _pem(tmp_path, "ca.crt", ca), _pem(tmp_path, "other.crt", other)
    srv.close()


def test_probe_speaks_tls_and_checks_the_server(amqp_tls_server: tuple[int, Path, Path]) -> None:
    port, ca, other = amqp_tls_server
    amqp = "AMQP\\x00\\x00\\x09\\x01"  # as rabbitmq's tasks write it
    assert probe("127.0.0.1", port, amqp, "RabbitMQ", str(ca)) == "RabbitMQ"
    with pytest.raises(ProbeError, match="CERTIFICATE_VERIFY_FAILED"):
        probe("127.0.0.1", port, amqp, "RabbitMQ", str(other))
    # Plain AMQP to a TLS port gets no RabbitMQ greeting.
    with pytest.raises(ProbeError, match=f"^127.0.0.1:{port}: "):
        probe("127.0.0.1", port, amqp, "RabbitMQ", "", timeout=2)
