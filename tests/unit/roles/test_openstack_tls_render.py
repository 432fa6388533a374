"""The OpenStack APIs over TLS (issue 11): the servers' gunicorn settings and every
client's config as the roles render them for the lab inventory's hosts, with the fabric
file's `cluster.openstack_tls` on (the default) and off.

On: every OpenStack URL a rendered config holds is https, and every section that holds
one names the deployment CA; the APIs serve the node certificate. Off: every such URL is
http and nothing names a certificate. Secrets are fixed strings (test_infra_tls_render's
Render), so nothing is written to the deploy host's secrets file."""

from __future__ import annotations

import configparser
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as infra  # noqa: E402

CA = "/etc/vrstack/pki/ca.crt"
CERT_STAT = infra.CERT_STAT
# An OpenStack API's URL: Keystone, Glance, Placement, Nova, Neutron, noVNC.
OPENSTACK_URL = re.compile(r"^(https?)://[^/:]+:(5000|9292|8778|8774|9696|6080)(/|$)")
# The roles whose API runs under gunicorn.
SERVERS = ["keystone", "glance", "placement", "nova_controller", "neutron_server"]


@pytest.fixture(params=[True, False], ids=["tls", "plain"])
def tls(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> bool:
    """The lab inventory as it is, or a copy whose fabric file says openstack_tls: false."""
    if not request.param:
        inv = tmp_path / "lab"
        shutil.copytree(infra.LAB_INV, inv)
        fabric = (inv / "fabric.yml").read_text()
        # The file as it is (host order gives the addresses), with the one switch added.
        (inv / "fabric.yml").write_text(
            fabric.replace("\ncluster:\n", "\ncluster:\n  openstack_tls: false\n")
        )
        monkeypatch.setattr(infra, "LAB_INV", inv)
    return bool(request.param)


def render(host: str, roles: list[str], template: str, **extra: Any) -> str:
    return infra.Render(host, roles, pki_service_cert=CERT_STAT, **extra).template(
        roles[-1], template
    )


def ini(text: str) -> configparser.RawConfigParser:
    """An ini file whose [DEFAULT] is a section like the others (not merged into each)."""
    parser = configparser.RawConfigParser(strict=False, default_section="\0")
    parser.read_string(text)
    return parser


def urls_of(conf: configparser.RawConfigParser) -> list[tuple[str, str, str]]:
    """(section, option, url) for every OpenStack URL in an ini file."""
    return [
        (section, key, value)
        for section in conf.sections()
        for key, value in conf.items(section)
        if OPENSTACK_URL.match(value)
    ]


# Options that hold a URL for someone else (a browser, glance's own workers): their
# sections need no CA.
NOT_CLIENTS = {("vnc", "novncproxy_base_url"), ("DEFAULT", "worker_self_reference_url")}


def client_configs() -> list[tuple[str, configparser.RawConfigParser]]:
    """Every rendered ini config of the OpenStack services that names an OpenStack URL."""
    found = []
    for host, roles, template in [
        ("lab-ctl1", ["glance"], "glance-api.conf.j2"),
        ("lab-ctl1", ["placement"], "placement.conf.j2"),
        ("lab-ctl1", ["neutron_server"], "neutron.conf.j2"),
        ("lab-ctl1", ["nova_controller"], "nova.conf.j2"),
        ("lab-cmp1", ["nova_controller"], "nova.conf.j2"),
        ("lab-cmp1", ["nova_controller", "nova_compute"], "nova-compute.conf.j2"),
    ]:
        extra = {"nova_controller_hosts": ["lab-ctl1"]} if "nova_controller" in roles else {}
        found.append((f"{host} {template}", ini(render(host, roles, template, **extra))))
    return found


def test_every_openstack_url_follows_the_switch_and_names_the_ca(tls: bool) -> None:
    scheme = "https" if tls else "http"
    seen = set()
    for name, conf in client_configs():
        for section, key, url in urls_of(conf):
            seen.add((section, key))
            found = OPENSTACK_URL.match(url)
            assert found and found[1] == scheme, f"{name} [{section}] {key} = {url}"
            if (section, key) in NOT_CLIENTS:
                continue
            cafile = conf.get(section, "cafile", fallback=None)
            assert cafile == (CA if tls else None), f"{name} [{section}] cafile = {cafile}"
    # The clients this must cover: token validation, service tokens, the Nova notifier,
    # nova's placement and neutron clients, the console URL.
    for wanted in [
        ("keystone_authtoken", "www_authenticate_uri"),
        ("keystone_authtoken", "auth_url"),
        ("service_user", "auth_url"),
        ("placement", "auth_url"),
        ("neutron", "auth_url"),
        ("nova", "auth_url"),
        ("vnc", "novncproxy_base_url"),
    ]:
        assert wanted in seen, f"no config names [{wanted[0]}] {wanted[1]}"


def test_nova_catalog_clients_get_the_ca(tls: bool) -> None:
    """[glance] and [keystone] find their URLs in the catalog: the CA goes there too."""
    for host in ("lab-ctl1", "lab-cmp1"):
        conf = ini(
            render(host, ["nova_controller"], "nova.conf.j2", nova_controller_hosts=["lab-ctl1"])
        )
        for section in ("glance", "keystone"):
            got = conf.get(section, "cafile", fallback=None)
            assert got == (CA if tls else None), f"{host} [{section}] cafile = {got}"


@pytest.mark.parametrize("role", SERVERS)
def test_gunicorn_serves_the_node_certificate(role: str, tls: bool) -> None:
    text = render("lab-ctl1", [role], "gunicorn.conf.py.j2")
    settings: dict[str, Any] = {}
    # gunicorn reads its settings as Python: run them as it would.
    exec(compile(text, f"{role}/gunicorn.conf.py", "exec"), settings)
    if tls:
        assert settings["certfile"] == "/etc/vrstack/pki/node.crt"
        assert settings["keyfile"] == "/etc/vrstack/pki/node.key"
        # A renewed certificate changes the file, which restarts the API.
        assert "sha256 c0ffee" in text
    else:
        assert "certfile" not in settings and "keyfile" not in settings


def test_novncproxy_is_tls_only_on_controllers(tls: bool) -> None:
    def default(host: str) -> configparser.SectionProxy:
        text = render(host, ["nova_controller"], "nova.conf.j2", nova_controller_hosts=["lab-ctl1"])
        return ini(text)["DEFAULT"]

    ctl, cmp = default("lab-ctl1"), default("lab-cmp1")
    if tls:
        assert ctl.get("ssl_only") == "true"
        assert (ctl.get("cert"), ctl.get("key")) == (
            "/etc/vrstack/pki/node.crt",
            "/etc/vrstack/pki/node.key",
        )
    else:
        assert "ssl_only" not in ctl and "cert" not in ctl
    assert "ssl_only" not in cmp and "key" not in cmp


def test_catalog_urls_and_role_requests_follow_the_switch(tls: bool) -> None:
    scheme = "https" if tls else "http"
    r = infra.Render(
        "lab-ctl1", ["keystone", "glance", "placement", "nova_controller", "neutron_server"]
    )
    for var in [
        "keystone_url",
        "glance_url",
        "placement_url",
        "nova_controller_api_url",
        "nova_controller_novncproxy_base_url",
        "neutron_server_url",
        "glance_keystone_url",
        "placement_keystone_url",
        "nova_controller_keystone_url",
        "neutron_server_keystone_url",
    ]:
        assert r.var(var).startswith(f"{scheme}://198.18.1.16:"), f"{var} = {r.var(var)}"
    # The roles' own probes of their local API.
    for var in ["__glance_local_url", "__placement_local_url", "__neutron_server_local_url"]:
        assert r.var(var).startswith(f"{scheme}://198.18.1.16:"), f"{var} = {r.var(var)}"
    for var in ["__keystone_tls", "__glance_tls", "__placement_tls", "__neutron_server_tls"]:
        assert r.var(var) is tls, var
    sdn = infra.Render("lab-ctl1", ["sdn_config"])
    assert sdn.var("sdn_config_keystone_url") == f"{scheme}://198.18.1.16:5000/v3"


def test_admin_credentials_name_the_ca(tls: bool) -> None:
    clouds = yaml.safe_load(render("lab-ctl1", ["keystone"], "clouds.yaml.j2"))
    cloud = clouds["clouds"]["vrstack-admin"]
    assert cloud["auth"]["auth_url"].startswith("https://" if tls else "http://")
    assert cloud.get("cacert") == (CA if tls else None)
    for where, ca in [("/opt/openstack/venv", CA), ("", "/deploy/state/ca.crt")]:
        openrc = render(
            "lab-ctl1",
            ["keystone"],
            "openrc.j2",
            __keystone_openrc_venv=where,
            __keystone_openrc_ca=ca,
        )
        env = dict(
            line.removeprefix("export ").split("=", 1)
            for line in openrc.splitlines()
            if line.startswith("export ")
        )
        assert env["OS_AUTH_URL"].startswith("https://" if tls else "http://")
        assert env.get("OS_CACERT") == (ca if tls else None)
