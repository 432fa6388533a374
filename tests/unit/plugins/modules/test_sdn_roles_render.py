"""The SDN roles' templates rendered with Ansible's templar from the fabric inventories'
host vars, then read back by the daemons' own config loaders (so every field the
roles write is one the daemon accepts), and the FreeBSD rc.d script through `sh -n`.
There is no FreeBSD host here: this is how its side is checked."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from ansible import context
from ansible.inventory.manager import InventoryManager
from ansible.module_utils.common.collections import ImmutableDict
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import init_plugin_loader
from ansible.template import Templar, trust_as_template
from ansible.vars.manager import VariableManager

from ansible_collections.vrstack.cloud.plugins.module_utils import sdn_service

ROOT = Path(__file__).resolve().parents[4]
sys.path.insert(0, str(ROOT / "files" / "sdn-src"))
from vrstack.agent.main import load as load_agent  # noqa: E402
from vrstack.analytics import access  # noqa: E402
from vrstack.config import auth  # noqa: E402
from vrstack.config.main import store_from_settings  # noqa: E402
from vrstack.control.main import load as load_control  # noqa: E402
from vrstack.service import connlimits, tls  # noqa: E402
from vrstack.service.daemon import http_tls  # noqa: E402
from vrstack.service.settings import Settings  # noqa: E402
from vrstack.status import report  # noqa: E402

LAB = ROOT / "inventories" / "lab"
BSD = ROOT / "inventories" / "example-freebsd"
MULTIRACK = ROOT / "inventories" / "multirack-lab"
TOKENS = {"sdn_config_admin_token": "a" * 32, "sdn_config_reader_token": "r" * 32}


# One secrets file for this module's renders, made fresh for the test run.
SCRATCH_SECRETS = Path(tempfile.mkdtemp(prefix="vrstack-render-")) / "secrets.yml"


def render_vars(inventory: Path, host: str, roles: list[str], **extra: Any) -> Templar:
    """Defaults and vars of `roles` (in order) over one host's inventory vars."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="AnsibleCollectionFinder has already")
        init_plugin_loader([str(ROOT / ".collections")])
    context.CLIARGS = ImmutableDict(connection="local")
    loader = DataLoader()
    inv = InventoryManager(loader=loader, sources=[str(inventory)])
    vm = VariableManager(loader=loader, inventory=inv)
    variables: dict[str, Any] = {}
    for role in roles:
        path = ROOT / "roles" / role / "defaults" / "main.yml"
        variables.update(loader.load_from_file(str(path), trusted_as_template=True))
    variables.update(vm.get_vars(host=inv.get_host(host), include_hostvars=False))
    for role in roles:
        path = ROOT / "roles" / role / "vars" / "main.yml"
        if path.exists():
            variables.update(loader.load_from_file(str(path), trusted_as_template=True))
    hostvars = {h.name: vm.get_vars(host=h, include_hostvars=False) for h in inv.get_hosts()}
    variables["hostvars"] = hostvars
    variables["groups"] = {g: [h.name for h in inv.groups[g].get_hosts()] for g in inv.groups}
    variables["inventory_hostname"] = host
    variables["ansible_managed"] = "Ansible managed"
    variables["role_path"] = str(ROOT / "roles" / roles[-1])
    # Never the deploy host's own store: a lab on this machine may have rotated its
    # secrets (e.g. switched the SDN's Keystone user to slot b).
    variables["vrstack_secrets_file"] = str(SCRATCH_SECRETS)
    variables.update(extra)
    return Templar(loader=loader, variables=variables)


def render(t: Templar, role: str, name: str) -> str:
    text = (ROOT / "roles" / role / "templates" / name).read_text()
    return str(t.template(trust_as_template(text)))


def settings(tmp_path: Path, name: str, text: str) -> Settings:
    path = tmp_path / name
    path.write_text(text)
    return Settings.load(path)


def test_lab_api_and_schema_configs(tmp_path: Path) -> None:
    pki = node_pki(tmp_path)
    t = render_vars(
        LAB, "lab-ctl1", ["sdn_package", "sdn_config"], sdn_config_pki_dir=str(pki), **TOKENS
    )
    assert t.template(trust_as_template("{{ sdn_config_store }}")) == "sqlite"
    api = settings(tmp_path, "api.yaml", render(t, "sdn_config", "api.yaml.j2"))
    _store, backend = store_from_settings(api)
    assert backend == "sqlite" and api.get_str("store.path") == "/var/lib/sdn-config/config.db"
    assert api.get_str("listen.host") == "198.18.1.16" and api.get_int("listen.port") == 8082
    # The static tokens, then people's Keystone tokens (Keystone on the controller).
    checker = auth.from_settings(api)
    assert isinstance(checker, auth.StaticThenKeystone)
    assert checker.static.admin_tokens == ("a" * 32,)
    ks = checker.keystone.ks
    assert (ks.v3, ks.username, ks.project) == (
        "https://198.18.1.16:5000/v3",
        "vrstack-sdn",
        "service",
    )
    assert ks.admin_roles == ("admin",) and ks.reader_roles == ("reader", "member")
    # Keystone over HTTPS (cluster.openstack_tls), checked with the deployment CA.
    assert ks.tls_files is not None and ks.tls_files.ca == str(pki / "ca.crt")
    assert len(ks.password) >= 16
    # HTTPS with the node certificate; reports to the collector checked with the CA.
    served = http_tls(api)
    assert served is not None and (served.cert, served.key) == (
        str(pki / "node.crt"),
        str(pki / "node.key"),
    )
    reports = report.options(api)
    assert reports is not None and reports.url == "https://198.18.1.16:8081"
    assert reports.ssl_context is not None
    schema_text = render(t, "sdn_config", "schema.yaml.j2")
    schema = yaml.safe_load(schema_text)
    assert schema["api"] == {
        "url": "https://198.18.1.16:8082",
        "token": "a" * 32,
        "tls": {"ca": str(pki / "ca.crt")},
    }
    schema_settings = settings(tmp_path, "schema.yaml", schema_text)
    assert tls.https_client(schema_settings, "api.url", "api.tls") is not None
    glob = t.template(trust_as_template("{{ sdn_config_global }}"))
    assert glob == {
        "asn": 64512,
        "encapsulation_priority": ["MPLSoUDP", "MPLSoGRE", "VXLAN"],
        "route_target_range": [8000000, 8099999],
        "mpls_label_range": [16, 1048575],
        "vni_range": [4096, 16777215],
        "gateway_route_targets": [],  # the lab has no gateway
    }


def test_global_config_and_bird_share_the_gateway_target() -> None:
    """One string from the fabric model: what external networks carry (global-config)
    is what BIRD on the gateway imports and announces with."""
    t = render_vars(MULTIRACK, "mr-ctl1", ["sdn_package", "sdn_config"], **TOKENS)
    glob = t.template(trust_as_template("{{ sdn_config_global }}"))
    assert glob["gateway_route_targets"] == ["target:64512:9000"]
    gw = render_vars(MULTIRACK, "mr-edge1", ["gateway"], gateway_bgp_password="")
    bird = render(gw, "gateway", "bird.conf.j2")
    assert "if (rt, 64512, 9000) ~ bgp_ext_community then accept;" in bird
    assert "bgp_ext_community.add((rt, 64512, 9000));" in bird


def test_three_controllers_use_etcd(tmp_path: Path) -> None:
    ctls = ["lab-ctl1", "lab-ctl2", "lab-cmp1"]  # any three hosts with fabric addresses
    t = render_vars(
        LAB,
        "lab-ctl2",
        ["sdn_package", "sdn_config"],
        sdn_config_controllers=ctls,
        **TOKENS,
    )
    api = settings(tmp_path, "api.yaml", render(t, "sdn_config", "api.yaml.j2"))
    _store, backend = store_from_settings(api)
    assert backend == "etcd"
    assert api.get_list("store.endpoints") == [
        "http://198.18.1.16:2379",
        "http://198.18.2.16:2379",
        "http://198.18.1.17:2379",
    ]
    etcd = dict(
        line.split("=", 1)
        for line in render(t, "sdn_config", "etcd.default.j2").splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert etcd["ETCD_NAME"] == '"lab-ctl2"'
    assert etcd["ETCD_INITIAL_CLUSTER"] == (
        '"lab-ctl1=http://198.18.1.16:2380,lab-ctl2=http://198.18.2.16:2380,'
        'lab-cmp1=http://198.18.1.17:2380"'
    )
    assert etcd["ETCD_LISTEN_PEER_URLS"] == '"http://198.18.2.16:2380"'


def node_pki(directory: Path) -> Path:
    """ca.crt, node.crt and node.key as vrstack.cloud.pki installs them (the daemons'
    loaders read the files the roles name)."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "render test")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = cert.public_bytes(serialization.Encoding.PEM)
    (directory / "ca.crt").write_bytes(pem)
    (directory / "node.crt").write_bytes(pem)
    (directory / "node.key").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return directory


def test_lab_control_config(tmp_path: Path) -> None:
    t = render_vars(
        LAB,
        "lab-ctl2",
        ["sdn_package", "sdn_control"],
        sdn_control_api_token="t" * 32,
        sdn_control_bgp_password="b" * 32,
        sdn_control_pki_dir=str(node_pki(tmp_path)),
        sdn_control_bgp_max_connections=100,
        sdn_control_bgp_max_connections_per_source=3,
    )
    ns, url, token, host, port = load_control(
        settings(tmp_path, "control.yaml", render(t, "sdn_control", "control.yaml.j2"))
    )
    assert (ns.name, ns.bgp_address, ns.router_id, ns.asn) == (
        "lab-ctl2",
        "198.18.2.16",
        "198.18.2.16",
        64512,
    )
    assert (url, token, host, port) == (
        "https://198.18.1.16:8082",
        "t" * 32,
        "127.0.0.1",
        8083,
    )
    assert (ns.xmpp_host, ns.xmpp_port) == ("198.18.2.16", 5269)
    assert ns.tls_verify_client and ns.tls_ca == str(tmp_path / "ca.crt")
    assert ns.bgp_password == "b" * 32 and ns.bgp_peer_passwords == {}
    assert ns.bgp_gateways == frozenset()  # the lab has no gateway: none to peer with
    assert (ns.bgp_limits.max_connections, ns.bgp_limits.max_connections_per_source) == (100, 3)


def test_gateway_gets_its_own_bgp_password(tmp_path: Path) -> None:
    """example-multirack's control nodes peer with gateway edge1: its MD5 password is its
    own generated secret, the mesh's is sdn_bgp_password (the secrets file is a temp one)."""
    secrets = tmp_path / "secrets" / "secrets.yml"
    secrets.parent.mkdir(mode=0o700)
    t = render_vars(
        ROOT / "inventories" / "example-multirack",
        "ctl1",
        ["sdn_package", "sdn_control"],
        sdn_control_api_token="t" * 32,
        vrstack_secrets_file=str(secrets),
        sdn_control_pki_dir=str(node_pki(tmp_path)),
    )
    ns = load_control(
        settings(tmp_path, "control.yaml", render(t, "sdn_control", "control.yaml.j2"))
    )[0]
    stored = yaml.safe_load(secrets.read_text())
    assert ns.bgp_peer_passwords == {"198.19.254.1": stored["sdn_bgp_gateway_edge1_password"]}
    assert ns.bgp_password == stored["sdn_bgp_password"] != ns.bgp_peer_passwords["198.19.254.1"]
    assert ns.bgp_gateways == frozenset({"198.19.254.1"})  # edge1 lists ctl1 in its peers


@pytest.mark.parametrize(
    ("host", "controls"),
    [
        ("lab-cmp1", [("198.18.1.16", 5269), ("198.18.2.16", 5269)]),
        ("lab-cmp2", [("198.18.2.16", 5269), ("198.18.1.16", 5269)]),
    ],
)
def test_lab_agent_config(tmp_path: Path, host: str, controls: list[tuple[str, int]]) -> None:
    found = {"stdout": '{"interface": "eth0", "mac": "02:aa:00:00:00:01", "gateway_mac": ""}'}
    t = render_vars(
        LAB,
        host,
        ["sdn_package", "vrouter"],
        __vrouter_agent_found=found,
        vrouter_agent_pki_dir=str(node_pki(tmp_path)),
    )
    agent, listen_host, listen_port = load_agent(
        settings(tmp_path, "agent.yaml", render(t, "vrouter", "agent.yaml.j2"))
    )
    assert agent.name == host and agent.controls == controls
    assert agent.fabric.interface == "eth0" and agent.fabric.mac == "02:aa:00:00:00:01"
    assert agent.fabric.gateway_mac == "02:00:00:00:00:02"  # none found: the agent's default
    # The lab sets vrouter_datapath: user: vrouterd's socket, pkt0 and flow file.
    assert agent.datapath_socket == "/run/vrouter/control.sock"
    assert (agent.pkt0_dir, agent.flow_file) == ("/run/vrouter", "/run/vrouter/flows")
    assert agent.label_range == (16, 1048575)
    assert (listen_host, listen_port) == ("127.0.0.1", 8085)
    # Port states to the config API and records to the collector, both over HTTPS.
    assert agent.config_api_url == "https://198.18.1.16:8082"
    assert agent.config_api_ssl is not None and agent.config_api_ssl.check_hostname
    assert agent.xmpp_tls is not None and agent.xmpp_tls.cert == str(tmp_path / "node.crt")


SERVICE = {
    "name": "vrstack-agent",
    "description": "vrstack vrouter agent",
    "config": "/etc/vrstack/agent.yaml",
    "user": "vrouter",
    "group": "vrouter",
    "capabilities": ["CAP_NET_ADMIN"],
    "netlink": True,
    "read_write_paths": ["/var/lib/vrouter"],
    "part_of": ["vrouterd.service"],
}


# The units and rc.d scripts come from vrstack.cloud.sdn_service (it renders them; the
# systemd unit's tests are in test_sdn_service.py).
def test_freebsd_rc_script(tmp_path: Path) -> None:
    t = render_vars(BSD, "bsd-cmp1", ["sdn_package"], sdn_service=SERVICE)
    assert t.template(trust_as_template("{{ __sdn_package_python }}")) == (
        "/usr/local/bin/python3.11"
    )
    text = sdn_service.render_rc(SERVICE, "/opt/vrstack/venv")
    script = tmp_path / "vrstack_agent"
    script.write_text(text)
    res = subprocess.run(["sh", "-n", str(script)], capture_output=True, text=True, check=False)
    assert res.returncode == 0, res.stderr
    lines = text.splitlines()
    assert lines[0] == "#!/bin/sh"
    assert {
        "# PROVIDE: vrstack_agent",
        'name="vrstack_agent"',
        'rcvar="vrstack_agent_enable"',
    } <= (set(lines))
    assert ': "${vrstack_agent_enable:=NO}"' in lines
    assert ': "${vrstack_agent_config:=/etc/vrstack/agent.yaml}"' in lines
    assert 'pidfile="/var/run/vrstack_agent.pid"' in lines
    (args,) = [x for x in lines if x.startswith("command_args=")]
    # daemon(8): restart, supervisor and child pidfiles, the user, syslog tag.
    for flag in ("-r", "-P ${pidfile}", "-u vrouter", "-T vrstack-agent"):
        assert flag in args
    assert "/opt/vrstack/venv/bin/vrstack-agent --config ${vrstack_agent_config}" in args


def test_sdn_playbook_syntax_with_freebsd_inventory() -> None:
    beside = Path(sys.executable).with_name("ansible-playbook")
    exe = str(beside) if beside.exists() else shutil.which("ansible-playbook")
    assert exe, "ansible-playbook is not on PATH (run make bootstrap)"
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"))
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    res = subprocess.run(
        [exe, "--syntax-check", "-i", str(BSD), str(ROOT / "playbooks" / "sdn.yml")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr


@pytest.mark.parametrize(
    ("inventory", "per_source"), [(LAB, 128), (ROOT / "inventories" / "ha-lab", 768)]
)
def test_api_per_source_cap_behind_haproxy(
    tmp_path: Path, inventory: Path, per_source: int
) -> None:
    """With several controllers every client reaches the config API through haproxy, from a
    controller's address: the per-source cap is then the total, not 128."""
    host = "lab-ctl1" if inventory == LAB else "ha-ctl1"
    t = render_vars(inventory, host, ["sdn_package", "sdn_config"], **TOKENS)
    api = settings(tmp_path, "api.yaml", render(t, "sdn_config", "api.yaml.j2"))
    limits = connlimits.from_settings(api, "http", connlimits.ConnLimits())
    assert (limits.max_connections, limits.max_connections_per_source) == (768, per_source)


ANALYTICS_TOKENS = {"sdn_analytics_admin_token": "a" * 32, "sdn_analytics_reader_token": "r" * 32}


def collector_vars(host: str, pki: Path) -> Templar:
    return render_vars(
        LAB,
        host,
        ["sdn_package", "sdn_analytics"],
        sdn_analytics_pki_dir=str(pki),
        **ANALYTICS_TOKENS,
    )


def test_collector_serves_https(tmp_path: Path) -> None:
    pki = node_pki(tmp_path)
    t = collector_vars("lab-ctl1", pki)
    collector = settings(
        tmp_path, "collector.yaml", render(t, "sdn_analytics", "collector.yaml.j2")
    )
    served = http_tls(collector)
    assert served is not None and served.cert == str(pki / "node.crt")
    url = t.template(trust_as_template("{{ __sdn_analytics_url }}"))
    assert url == "https://198.18.1.16:8081"


def test_sdn_tls_false_renders_plain_http(tmp_path: Path) -> None:
    """cluster.sdn_tls: false in the fabric file: no http.tls, http:// clients, no CA."""
    plain = {**TOKENS, "vrstack_fabric": {"sdn_tls": False, "name": "lab", "hosts": {}}}
    t = render_vars(LAB, "lab-ctl1", ["sdn_package", "sdn_config"], **plain)
    api = settings(tmp_path, "api.yaml", render(t, "sdn_config", "api.yaml.j2"))
    assert http_tls(api) is None
    schema = yaml.safe_load(render(t, "sdn_config", "schema.yaml.j2"))
    assert schema["api"]["url"] == "http://198.18.1.16:8082" and "tls" not in schema["api"]


def test_ha_clients_use_the_vip_over_https() -> None:
    """Several controllers: every client has the fabric model's URL, the internal VIP, and
    haproxy passes the TLS through with a verified HTTPS health check."""
    vip = "https://198.19.41.10:8082"
    t = render_vars(
        ROOT / "inventories" / "ha-lab",
        "ha-ctl1",
        ["neutron_server"],
        neutron_server_sdn_api_token="t" * 32,
    )
    ml2 = render(t, "neutron_server", "ml2_conf.ini.j2")
    assert f"api_url = {vip}" in ml2 and "api_ca_file = /etc/vrstack/pki/ca.crt" in ml2
    t = render_vars(ROOT / "inventories" / "ha-lab", "ha-ctl1", ["sdn_package", "sdn_control"])
    assert t.template(trust_as_template("{{ sdn_control_api_url }}")) == vip
    t = render_vars(
        ROOT / "inventories" / "ha-lab", "ha-ctl1", ["haproxy"], __haproxy_stats_password="s"
    )
    cfg = render(t, "haproxy", "haproxy.cfg.j2").split("\nlisten ")
    sdn = next(block for block in cfg if block.startswith("sdn-config"))
    assert "mode tcp" in sdn and "http-check send meth GET uri /health" in sdn
    assert "check-ssl verify required ca-file /etc/vrstack/pki/ca.crt" in sdn
    # The OpenStack APIs too (cluster.openstack_tls), noVNC with a verified TLS handshake.
    keystone = next(block for block in cfg if block.startswith("keystone"))
    assert "mode tcp" in keystone and "http-check send meth GET uri /v3" in keystone
    assert "check-ssl verify required ca-file /etc/vrstack/pki/ca.crt" in keystone
    novnc = next(block for block in cfg if block.startswith("novncproxy"))
    assert "httpchk" not in novnc and "balance source" in novnc
    assert "check-ssl verify required ca-file /etc/vrstack/pki/ca.crt" in novnc


@pytest.mark.parametrize("role", ["sdn_config", "sdn_analytics"])
def test_sdn_keystone_auth_false_deploys_static_tokens_only(tmp_path: Path, role: str) -> None:
    """The inventory's `sdn_keystone_auth: false`: no Keystone section in either API."""
    tokens = {**TOKENS, **ANALYTICS_TOKENS}
    template = "api.yaml.j2" if role == "sdn_config" else "collector.yaml.j2"
    # Keystone is https: its CA must be there to load the settings.
    pki = {f"{role}_pki_dir": str(node_pki(tmp_path))}
    for on in (True, False):
        t = render_vars(
            LAB, "lab-ctl1", ["sdn_package", role], sdn_keystone_auth=on, **tokens, **pki
        )
        conf = settings(tmp_path, "x.yaml", render(t, role, template))
        assert auth.uses_keystone(conf) is on
        checker = auth.from_settings(conf)
        assert isinstance(checker, auth.StaticThenKeystone if on else auth.StaticTokens)


def test_collector_with_keystone_finds_projects_at_the_config_api(tmp_path: Path) -> None:
    """An analytics-only host (ctl2): Keystone and the config API on the controller, the
    config API checked with the deployment CA; the same service user as the config API."""
    pki = node_pki(tmp_path)
    t = collector_vars("lab-ctl2", pki)
    text = render(t, "sdn_analytics", "collector.yaml.j2")
    collector = settings(tmp_path, "collector.yaml", text)
    checker = auth.from_settings(collector)
    assert isinstance(checker, auth.StaticThenKeystone)
    assert checker.keystone.ks.v3 == "https://198.18.1.16:5000/v3"
    assert checker.keystone.ks.username == "vrstack-sdn"
    views = access.from_settings(collector)
    assert views is not None and views.client.url == "https://198.18.1.16:8082"
    assert yaml.safe_load(text)["config_api"]["tls"] == {"ca": str(pki / "ca.crt")}
    t_api = render_vars(
        LAB, "lab-ctl1", ["sdn_package", "sdn_config"], sdn_config_pki_dir=str(pki), **TOKENS
    )
    api = auth.from_settings(
        settings(tmp_path, "api.yaml", render(t_api, "sdn_config", "api.yaml.j2"))
    )
    assert isinstance(api, auth.StaticThenKeystone)
    assert api.keystone.ks.password == checker.keystone.ks.password  # one user for both
