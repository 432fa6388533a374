"""The OpenStack APIs over TLS on the deployed lab (issue 11, docs/security.md): Keystone,
Glance, Placement, Nova, Neutron and noVNC on every controller (and through the VIP when
there are several) answer TLS with a certificate that the deployment CA verifies and the
system CAs do not; plain HTTP to the same ports gets no HTTP answer; the catalog lists
only https endpoints; the admin openrc names the CA and the `openstack` CLI works with
it (and fails without it).

Needs the whole lab (the OpenStack stage) with `cluster.openstack_tls` on (the default);
with it off the module is skipped.
"""

from __future__ import annotations

import http.client
import socket
import ssl

import pytest
import test_security as security
from labcloud import STATE, Cli, openrc_env
from test_security import Lab

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition

# The OpenStack endpoints for users and the console proxy, as the roles' defaults place them.
PORTS = {
    "keystone": 5000,
    "glance": 9292,
    "placement": 8778,
    "nova": 8774,
    "neutron": 9696,
    "novnc": 6080,
}


def targets(lab: Lab) -> list[str]:
    """Every controller's fabric address, and the clients' address (the VIP with several)."""
    found = [n.ip for n in lab.by_role("controller")]
    api = lab.model["endpoints"]["api"]
    return found + ([api] if api not in found else [])


@pytest.fixture(scope="module", autouse=True)
def openstack_tls(lab: Lab) -> None:
    if lab.model["endpoints"].get("openstack_scheme") != "https":
        pytest.skip("cluster.openstack_tls is false in this inventory: the APIs are plain HTTP")


def handshake(ip: str, port: int, cafile: str | None) -> str:
    """A TLS handshake to ip:port checked with cafile (None: the system CAs) and the
    address; the protocol version, or why it failed."""
    ctx = ssl.create_default_context(cafile=cafile)
    try:
        with (
            socket.create_connection((ip, port), timeout=10) as raw,
            ctx.wrap_socket(raw, server_hostname=ip) as tls,
        ):
            return str(tls.version())
    except ssl.SSLCertVerificationError as exc:
        return f"verify: {exc.verify_message}"
    except OSError as exc:
        return f"error: {type(exc).__name__}: {exc}"


def plain_http_status(ip: str, port: int) -> int | None:
    """The status a plain HTTP GET / gets (None: no HTTP answer at all)."""
    conn = http.client.HTTPConnection(ip, port, timeout=10)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
    finally:
        conn.close()


def test_every_api_port_answers_tls_verified_by_the_deployment_ca(lab: Lab) -> None:
    ca = str(STATE / "ca.crt")
    problems = []
    for ip in targets(lab):
        for name, port in PORTS.items():
            with_ca = handshake(ip, port, ca)
            if with_ca not in ("TLSv1.2", "TLSv1.3"):
                problems.append(f"{name} {ip}:{port} with the deployment CA: {with_ca}")
            system = handshake(ip, port, None)
            if not system.startswith("verify:"):
                problems.append(
                    f"{name} {ip}:{port} with the system CAs: {system} (should not verify)"
                )
    assert not problems, "\n".join(problems)


def test_plain_http_to_the_api_ports_gets_no_answer(lab: Lab) -> None:
    answered = {
        f"{name} {ip}:{port}": status
        for ip in targets(lab)
        for name, port in PORTS.items()
        if (status := plain_http_status(ip, port)) is not None
    }
    assert not answered, f"plain HTTP answered (tokens would go in clear): {answered}"


# The services the roles register (other tests add throw-away ones of their own).
DEPLOYED = {"identity", "image", "placement", "compute", "network", "sdn"}


def test_catalog_lists_only_https_endpoints(admin: Cli) -> None:
    endpoints = [e for e in admin.ok("endpoint", "list") if e["Service Type"] in DEPLOYED]
    # (sdn: the config API's entry, unless sdn_keystone_auth is false)
    assert DEPLOYED - {"sdn"} <= {e["Service Type"] for e in endpoints}, endpoints
    plain = [
        f"{e['Service Name']} {e['Interface']} {e['URL']}"
        for e in endpoints
        if not e["URL"].startswith("https://")
    ]
    assert not plain, f"endpoints that are not https: {plain}"


def test_openrc_names_the_ca_and_the_cli_needs_it(admin: Cli) -> None:
    env = openrc_env(STATE / "openrc")
    assert env["OS_AUTH_URL"].startswith("https://"), env["OS_AUTH_URL"]
    assert env.get("OS_CACERT") == str(STATE / "ca.crt"), env.get("OS_CACERT")
    # Every API through the catalog, checked with that CA.
    admin.ok("server", "list")
    admin.ok("network", "list")
    admin.ok("image", "list")
    # Without the CA the client refuses the certificate (verification is never off).
    without = Cli(admin.client, {k: v for k, v in admin.env.items() if k != "OS_CACERT"})
    err = without.fails("token", "issue")
    assert "CERTIFICATE_VERIFY_FAILED" in err or "certificate verify failed" in err.lower(), err[
        -800:
    ]
