"""The config API and the analytics collector over HTTPS (`http.tls`), as processes.

A test CA issues the servers' certificates for 127.0.0.1. A client holding that CA gets
its answers; one with only the system CAs, another CA, or a certificate issued for
another address is refused in the handshake, and plain HTTP to the TLS port gets no
answer (the daemon logs the refusal). A key that is not the certificate's stops the
daemon at start, naming the field.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "control"))
from pkikit import CA, Issued

from vrstack.analytics.sender import Sender
from vrstack.config.client import ConfigClient
from vrstack.config.testing import ADMIN_TOKEN, READER_TOKEN, SRC, Daemon
from vrstack.openstack.configapi import ApiError as SyncApiError
from vrstack.openstack.configapi import SyncConfigClient
from vrstack.service import tls
from vrstack.service.settings import ConfigError, Settings
from vrstack.status import node

API, COLLECTOR = "vrstack.config.main", "vrstack.analytics.main"


class Pki:
    def __init__(self, directory: Path) -> None:
        self.ca = CA(directory, "deploy-ca")
        self.other = CA(directory, "other-ca")
        self.server = self.ca.issue("api-node", ips=("127.0.0.1",), server=True)
        self.elsewhere = self.ca.issue("far-node", ips=("127.0.0.2",), server=True)


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    return Pki(tmp_path)


def config(module: str, tmp_path: Path, cert: Issued | None, **extra: Any) -> dict[str, Any]:
    conf: dict[str, Any] = {
        "listen": {"host": "127.0.0.1", "port": 0},
        "auth": {"backend": "static", "admin_token": ADMIN_TOKEN, "reader_token": READER_TOKEN},
        "log": {"level": "info"},
        "store": {"path": str(tmp_path / f"{module}.db")},
        **extra,
    }
    if module == API:
        conf["store"]["backend"] = "sqlite"
    if cert is not None:
        conf["http"] = {"tls": {"cert": str(cert.cert), "key": str(cert.key)}}
    return conf


@pytest.fixture(params=[API, COLLECTOR], ids=["config-api", "collector"])
def server(request: pytest.FixtureRequest, tmp_path: Path, pki: Pki) -> Iterator[Daemon]:
    d = Daemon(request.param, config(request.param, tmp_path, pki.server), tmp_path, "srv")
    d.start()
    try:
        yield d
    finally:
        d.kill()


def ctx(ca: Path | None) -> ssl.SSLContext:
    return tls.client_context(tls.TlsFiles(ca=str(ca) if ca else ""))


async def health(url: str, context: ssl.SSLContext | None) -> int:
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context or True)) as session,
        session.get(url + "/health", timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        return resp.status


def plain_get(port: int) -> bytes:
    """A plain HTTP request to the TLS port: whatever comes back before it closes."""
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        data = b""
        try:
            while len(data) < 65536 and (chunk := s.recv(4096)):
                data += chunk
        except (ConnectionResetError, TimeoutError):
            pass
        return data


@pytest.mark.asyncio
async def test_a_client_with_the_ca_is_served_others_are_refused(server: Daemon, pki: Pki) -> None:
    assert server.url.startswith("https://127.0.0.1:")
    # Each on a new connection: a request sent with the end of the handshake is served.
    assert [await health(server.url, ctx(pki.ca.path)) for _ in range(10)] == [200] * 10
    for wrong in (None, pki.other.path):  # the system CAs, another CA
        with pytest.raises(aiohttp.ClientConnectorCertificateError):
            await health(server.url, ctx(wrong))
    # Plain HTTP to the TLS port: no HTTP answer at all, and one refusal logged.
    assert not plain_get(server.port).startswith(b"HTTP/")
    deadline = time.monotonic() + 10
    refused: list[dict[str, Any]] = []
    while not any("not a TLS client" in r["reason"] for r in refused):
        assert time.monotonic() < deadline, f"no refusal logged: {refused}"
        await asyncio.sleep(0.05)
        refused = [x for x in server.logs() if x.get("msg") == "client refused"]
    assert refused[-1]["addr"].startswith("127.0.0.1:")


@pytest.mark.asyncio
async def test_the_server_name_is_checked(tmp_path: Path, pki: Pki) -> None:
    """A certificate from the right CA but for another address is refused too."""
    d = Daemon(API, config(API, tmp_path, pki.elsewhere), tmp_path, "far")
    d.start()
    try:
        with pytest.raises(aiohttp.ClientConnectorCertificateError) as info:
            await health(d.url, ctx(pki.ca.path))
        assert "127.0.0.1" in str(info.value)
    finally:
        d.kill()


@pytest.mark.asyncio
async def test_config_clients_over_https(tmp_path: Path, pki: Pki) -> None:
    """The async client (agent, control node, schema transformer) and the blocking one
    (Neutron) read and write through TLS with the CA, and fail without it."""
    d = Daemon(API, config(API, tmp_path, pki.server), tmp_path, "api")
    d.start()
    try:
        async with ConfigClient(d.url, ADMIN_TOKEN, ssl_context=ctx(pki.ca.path)) as c:
            made = await c.create("project", {"name": "over-tls"})
        sync = SyncConfigClient(d.url, ADMIN_TOKEN, 5.0, str(pki.ca.path))
        got = await asyncio.to_thread(sync.get, "project", made["uuid"])
        assert got is not None and got["name"] == "over-tls"
        other = SyncConfigClient(d.url, ADMIN_TOKEN, 5.0, str(pki.other.path))
        with pytest.raises(SyncApiError) as info:
            await asyncio.to_thread(other.get, "project", made["uuid"])
        assert info.value.status == 0 and "CERTIFICATE_VERIFY_FAILED" in str(info.value)
        async with ConfigClient(d.url, ADMIN_TOKEN) as c:  # the system CAs only
            with pytest.raises(aiohttp.ClientConnectorCertificateError):
                await c.get("project", made["uuid"])
    finally:
        d.kill()


@pytest.mark.asyncio
async def test_sender_delivers_over_https_only_to_a_trusted_collector(
    tmp_path: Path, pki: Pki
) -> None:
    d = Daemon(COLLECTOR, config(COLLECTOR, tmp_path, pki.server), tmp_path, "coll")
    d.start()
    try:
        for ca, delivered in ((pki.other.path, False), (pki.ca.path, True)):
            sender = Sender(d.url, "tls-node", ADMIN_TOKEN, ssl_context=ctx(ca), backoff_max=0.5)
            stop = asyncio.Event()
            task = asyncio.create_task(sender.run(stop))
            sender.emit("log", service="t", level="info", msg="over tls")
            assert await sender.flushed(8.0) is delivered, sender.last_error
            stop.set()
            await asyncio.wait_for(task, 15)
            if not delivered:
                assert sender.stats["sent"] == 0 and "certificate" in sender.last_error.lower()
        assert sender.stats["sent"] == 1
    finally:
        d.kill()


def run(module: str, tmp_path: Path, conf: dict[str, Any]) -> subprocess.CompletedProcess[str]:
    d = Daemon(module, conf, tmp_path, "bad")  # only for its config file
    return subprocess.run(
        [sys.executable, "-m", module, "--config", str(d.config_path)],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PYTHONPATH": str(SRC)},
    )


@pytest.mark.parametrize("module", [API, COLLECTOR], ids=["config-api", "collector"])
def test_a_key_that_is_not_the_certificates_stops_the_daemon(
    module: str, tmp_path: Path, pki: Pki
) -> None:
    conf = config(module, tmp_path, pki.server)
    conf["http"]["tls"]["key"] = str(pki.elsewhere.key)
    out = run(module, tmp_path, conf)
    assert out.returncode == 2, out
    assert "http.tls.key" in out.stderr and "is not the private key of" in out.stderr
    assert str(tmp_path / "bad.yaml") in out.stderr
    conf["http"]["tls"] = {"key": str(pki.server.key)}  # a key without its certificate
    out = run(module, tmp_path, conf)
    assert out.returncode == 2 and "http.tls.cert: is required" in out.stderr, out.stderr


def settings(tmp_path: Path, data: dict[str, Any]) -> Settings:
    return Settings(str(tmp_path / "svc.yaml"), data)


def test_client_settings(tmp_path: Path, pki: Pki) -> None:
    """`https_client`: none for http://, the CA checked for https://, a CA with an
    http:// URL refused naming the field."""
    ca = str(pki.ca.path)
    plain = {"api": {"url": "http://127.0.0.1:8082"}}
    assert tls.https_client(settings(tmp_path, plain), "api.url", "api.tls") is None
    secure = {"api": {"url": "https://127.0.0.1:8082", "tls": {"ca": ca}}}
    made = tls.https_client(settings(tmp_path, secure), "api.url", "api.tls")
    assert made is not None and made.check_hostname and made.verify_mode == ssl.CERT_REQUIRED
    mixed = {"api": {"url": "http://127.0.0.1:8082", "tls": {"ca": ca}}}
    with pytest.raises(ConfigError, match=r"svc\.yaml: api\.tls\.ca: is set but api\.url"):
        tls.https_client(settings(tmp_path, mixed), "api.url", "api.tls")
    missing = {"api": {"url": "https://x:1", "tls": {"ca": str(tmp_path / "none.crt")}}}
    with pytest.raises(ConfigError, match=r"api\.tls\.ca: cannot read"):
        tls.https_client(settings(tmp_path, missing), "api.url", "api.tls")


def test_blocking_client_names_a_bad_ca_file(tmp_path: Path) -> None:
    with pytest.raises(tls.TlsFileError, match="cannot read"):
        SyncConfigClient("https://127.0.0.1:1", ADMIN_TOKEN, 1.0, str(tmp_path / "none.crt"))
    with pytest.raises(urllib.error.URLError):  # http:// needs no CA: it is not read
        urllib.request.urlopen("http://127.0.0.1:1", timeout=1)


def test_vrstack_status_reads_an_https_health_with_the_served_certificate(
    tmp_path: Path, pki: Pki
) -> None:
    """`vrstack-status` (sdn_status) asks /health over HTTPS and accepts exactly the
    certificate the service's config names."""
    d = Daemon(API, config(API, tmp_path, pki.server), tmp_path, "api")
    d.start()
    try:
        conf = json.loads(d.config_path.read_text())
        conf["listen"]["port"] = d.port
        d.config_path.write_text(json.dumps(conf))
        known = node.Known("vrstack-api", "controller", str(d.config_path), 8082)
        unit = node.Unit(True, True, "active/running", str(d.config_path))
        got = node.service_status(node.LocalSystem(), known, unit, 5.0)
        assert (got.state, got.health) == ("active", f"https://127.0.0.1:{d.port}/health")
        # Another certificate in the config than the one served: not accepted.
        conf["http"]["tls"]["cert"] = str(pki.elsewhere.cert)
        d.config_path.write_text(json.dumps(conf))
        got = node.service_status(node.LocalSystem(), known, unit, 5.0)
        assert got.state == "initializing" and "CERTIFICATE_VERIFY_FAILED" in got.reason
    finally:
        d.kill()
