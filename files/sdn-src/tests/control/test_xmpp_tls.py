"""XMPP over TLS between real agent sessions and a control node: routes flow over a
verified (and, when configured, mutual) TLS stream; a certificate from another CA, no
certificate, a wrong server name and a plain-TCP agent are refused, and the control node
logs each refusal with the peer's address and the reason (another CA, none, expired,
self-signed, revoked by the CRL). Certificates and CRLs come from pkikit's throwaway CA."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from controlkit import Cluster, instance_name
from pkikit import CA, Issued, serial

from vrstack.agent import main as agent_main
from vrstack.agent.session import ControlSession
from vrstack.config.testing import ADMIN_TOKEN, Daemon, free_port, wait_until
from vrstack.control import main as control_main
from vrstack.control.node import ControlNode, NodeSettings
from vrstack.control.xmpp import Nexthop
from vrstack.service import tls
from vrstack.service.connlimits import ConnLimits
from vrstack.service.rawclient import RawClient, wait_refused
from vrstack.service.settings import ConfigError, Settings

INSTANCE = "default-domain:demo:blue:blue"
ROUTE = {"198.18.10.3/32": Nexthop("198.18.2.11", 17, 0, ("MPLSoUDP",))}


@dataclass
class Pki:
    ca: CA
    other: CA  # a CA the control node does not trust
    control: Issued  # for ctl1.test and 127.0.0.1
    compute1: Issued
    compute2: Issued
    rogue: Issued  # compute3, signed by `other`
    expired: Issued  # compute5, from `ca` but expired yesterday
    self_signed: Issued  # compute6, signed by its own key


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    d = tmp_path_factory.mktemp("pki")
    ca, other = CA(d, "vrstack-test-ca"), CA(d, "some-other-ca")
    return Pki(
        ca=ca,
        other=other,
        control=ca.issue("ctl1.test", ("127.0.0.1",), server=True),
        compute1=ca.issue("compute1"),
        compute2=ca.issue("compute2"),
        rogue=other.issue("compute3"),
        expired=ca.issue("compute5", expired=True),
        self_signed=ca.issue("compute6", self_signed=True),
    )


# ---- a control node and agent sessions in this process --------------------------------


def mutual_node(pki: Pki, **settings: Any) -> ControlNode:
    """A control node that requires agents to present a certificate from the test CA."""
    return ControlNode(
        NodeSettings(
            name="ctl1",
            bgp_address="127.0.0.41",
            xmpp_port=0,
            tls_cert=str(pki.control.cert),
            tls_key=str(pki.control.key),
            tls_ca=str(pki.ca.path),
            tls_verify_client=True,
            **settings,
        )
    )


@pytest_asyncio.fixture
async def mutual(pki: Pki) -> AsyncIterator[ControlNode]:
    node = mutual_node(pki)
    await node.start()
    yield node
    await node.stop()


@dataclass
class Running:
    session: ControlSession
    stop: asyncio.Event
    task: asyncio.Task[None]
    changes: int = 0


@pytest_asyncio.fixture
async def agents() -> AsyncIterator[Callable[..., Running]]:
    """Start real agent sessions (`vrstack.agent.session`); all are stopped at the end."""
    started: list[Running] = []

    def start(name: str, port: int, files: tls.TlsFiles | None, server_name: str = "") -> Running:
        ctx = tls.client_context(files) if files else None
        run = Running(None, asyncio.Event(), None)  # type: ignore[arg-type]

        def changed() -> None:
            run.changes += 1

        run.session = ControlSession(
            name, "127.0.0.1", port, changed, retry=0.2, tls=ctx, server_name=server_name
        )
        run.task = asyncio.ensure_future(run.session.run(run.stop, lambda: asyncio.sleep(0)))
        started.append(run)
        return run

    yield start
    for run in started:
        run.stop.set()
    await asyncio.wait_for(asyncio.gather(*(r.task for r in started)), 10)


def agent_files(pki: Pki, issued: Issued | None, ca: CA | None = None) -> tls.TlsFiles:
    cert, key = (str(issued.cert), str(issued.key)) if issued else ("", "")
    return tls.TlsFiles(cert=cert, key=key, ca=str((ca or pki.ca).path))


async def until(predicate: Callable[[], Any], timeout: float = 10.0) -> Any:
    async def check() -> Any:
        return predicate()

    return await wait_until(check, timeout=timeout)


def refusals(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == "agent refused"]


async def refusal_of(caplog: pytest.LogCaptureFixture, run: Running) -> str:
    """The reason of the node's first refusal, once the agent saw it; checks its level
    and the peer's address."""
    await until(lambda: refusals(caplog) and run.session.last_error)
    record = refusals(caplog)[0]
    assert record.levelno == logging.WARNING
    assert str(getattr(record, "addr", "")).startswith("127.0.0.1:"), record.__dict__
    assert not run.session.up
    return str(getattr(record, "reason", ""))


@pytest.mark.asyncio
async def test_agents_exchange_routes_over_mutual_tls(
    pki: Pki, mutual: ControlNode, agents: Callable[..., Running]
) -> None:
    a = agents("compute1", mutual.xmpp_port, agent_files(pki, pki.compute1))
    b = agents("compute2", mutual.xmpp_port, agent_files(pki, pki.compute2))
    await until(lambda: a.session.up and b.session.up)
    await b.session.subscribe(INSTANCE)
    await a.session.publish(INSTANCE, ROUTE)
    got = await until(lambda: b.session.routes.get(INSTANCE, {}).get("198.18.10.3/32"))
    assert got == (ROUTE["198.18.10.3/32"],)
    intro = mutual.introspect()
    assert intro["xmpp_tls"] == "mutual" and intro["agents_refused"] == 0
    assert [x["name"] for x in intro["agents"]] == ["compute1", "compute2"]
    assert a.session.view()["tls"] is True
    # Each agent's end really is TLS, with the node's certificate from our CA.
    writer = a.session._writer
    assert writer is not None
    assert writer.get_extra_info("ssl_object").version() in ("TLSv1.2", "TLSv1.3")
    assert writer.get_extra_info("peercert")["subject"] == ((("commonName", "ctl1.test"),),)


@pytest.mark.asyncio
async def test_connection_limits_hold_through_tls_handshakes(
    pki: Pki, agents: Callable[..., Running]
) -> None:
    """A place is taken at the accept, before the handshake: a failed handshake gives it
    back, a connection over the limit is closed before any TLS, and a TLS session that
    ends gives its place back."""
    node = mutual_node(pki, xmpp_limits=ConnLimits(3, 3))
    await node.start()
    raws: list[RawClient] = []
    try:
        gate = node.xmpp_gate
        # An agent of another CA retries every 0.2 s: each refused handshake frees its place.
        rogue = agents("compute3", node.xmpp_port, agent_files(pki, pki.rogue))
        await until(lambda: node.agents_refused >= 5)
        rogue.stop.set()
        await asyncio.wait_for(rogue.task, 10)
        await until(lambda: gate.open == 0)
        a = agents("compute1", node.xmpp_port, agent_files(pki, pki.compute1))
        b = agents("compute2", node.xmpp_port, agent_files(pki, pki.compute2))
        await until(lambda: a.session.up and b.session.up)
        assert gate.open == 2
        # The third place, then one over the limit: closed before a byte of TLS.
        raws = [await RawClient(node.xmpp_port).connect() for _ in range(2)]
        await wait_refused(raws, 1, 2.0)
        assert gate.open == 3 and gate.refused == 1
        for c in raws:  # its handshake ends with the connection: the place is free again
            c.close()
        await until(lambda: gate.open == 2)
        # An agent that stops gives its TLS session's place back.
        b.stop.set()
        await asyncio.wait_for(b.task, 10)
        await until(lambda: gate.open == 1)
        assert a.session.up
    finally:
        for c in raws:
            c.close()
        await node.stop()


@pytest.mark.asyncio
async def test_certificate_from_another_ca_is_refused_and_logged(
    pki: Pki,
    mutual: ControlNode,
    agents: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    rogue = agents("compute3", mutual.xmpp_port, agent_files(pki, pki.rogue))
    assert "certificate" in await refusal_of(caplog, rogue)
    # TLS 1.3: the agent's handshake ends before the node checks its certificate; the
    # node then closes, and the agent says what that likely means.
    assert "refuse this agent's certificate" in rogue.session.last_error
    assert rogue.session.flaps == 0 and not rogue.session.up
    assert "compute3" not in mutual.agents and mutual.agents_refused >= 1
    # Without a client certificate at all: refused too, with its own reason.
    caplog.clear()
    bare = agents("compute4", mutual.xmpp_port, agent_files(pki, None))
    await until(lambda: refusals(caplog) and bare.session.last_error)
    assert getattr(refusals(caplog)[0], "reason", "") == "no client certificate"
    assert "compute4" not in mutual.agents
    # The node serves trusted agents all along.
    good = agents("compute1", mutual.xmpp_port, agent_files(pki, pki.compute1))
    await until(lambda: good.session.up)
    assert rogue.session.flaps == 0 and not rogue.session.up
    assert "refuse this agent's certificate" in bare.session.last_error


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("which", "name", "words"),
    [
        ("expired", "compute5", "certificate not accepted: certificate has expired"),
        ("self_signed", "compute6", "certificate not accepted: self-signed certificate"),
        # A valid certificate of another compute: an agent speaks only for itself.
        ("compute1", "compute2", "certificate is for 'compute1', the stream is from 'compute2'"),
    ],
)
async def test_expired_self_signed_or_borrowed_certificate_is_refused_and_logged(
    pki: Pki,
    mutual: ControlNode,
    agents: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
    which: str,
    name: str,
    words: str,
) -> None:
    caplog.set_level(logging.INFO)
    run = agents(name, mutual.xmpp_port, agent_files(pki, getattr(pki, which)))
    reason = await refusal_of(caplog, run)
    assert words in reason, reason
    assert name not in mutual.agents
    assert mutual.introspect()["agents_refused"] >= 1


@pytest.mark.asyncio
async def test_agent_verifies_the_control_node(
    pki: Pki, mutual: ControlNode, agents: Callable[..., Running]
) -> None:
    # Trusting another CA: the node's certificate is not accepted.
    wrong_ca = agents("compute1", mutual.xmpp_port, agent_files(pki, pki.compute1, pki.other))
    # The right CA, but the name the agent expects is not in the node's certificate.
    wrong_name = agents(
        "compute2", mutual.xmpp_port, agent_files(pki, pki.compute2), server_name="ctl9.test"
    )
    # The right CA and the name in the certificate (not the address) also works.
    by_name = agents(
        "compute1", mutual.xmpp_port, agent_files(pki, pki.compute1), server_name="ctl1.test"
    )
    await until(lambda: wrong_ca.session.last_error and wrong_name.session.last_error)
    await until(lambda: by_name.session.up)
    assert "certificate not accepted" in wrong_ca.session.last_error
    assert "self-signed" in wrong_ca.session.last_error or "issuer" in wrong_ca.session.last_error
    assert "ctl9.test" in wrong_name.session.last_error
    assert "compute2" not in mutual.agents
    assert not wrong_ca.session.up and not wrong_name.session.up


@pytest.mark.asyncio
async def test_plain_tcp_agent_against_a_tls_node_fails_clearly(
    pki: Pki,
    mutual: ControlNode,
    agents: Callable[..., Running],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    plain = agents("compute1", mutual.xmpp_port, None)
    await until(lambda: refusals(caplog) and plain.session.last_error, timeout=15)
    assert "closed the connection" in plain.session.last_error
    assert "TLS" in plain.session.last_error  # the hint an operator needs
    assert getattr(refusals(caplog)[0], "reason", "").startswith("not a TLS client")
    assert not plain.session.up and "compute1" not in mutual.agents


@pytest.mark.asyncio
async def test_tls_agent_against_a_plain_node_fails_clearly(
    pki: Pki, agents: Callable[..., Running]
) -> None:
    node = ControlNode(NodeSettings(name="ctl2", bgp_address="127.0.0.42", xmpp_port=0))
    await node.start()
    try:
        run = agents("compute1", node.xmpp_port, agent_files(pki, pki.compute1))
        await until(lambda: run.session.last_error)
        assert run.session.last_error.startswith("TLS with 127.0.0.1:"), run.session.last_error
        assert not run.session.up and not node.agents
    finally:
        await node.stop()


@pytest.mark.asyncio
async def test_server_only_tls_accepts_agents_without_certificates(
    pki: Pki, agents: Callable[..., Running]
) -> None:
    node = ControlNode(
        NodeSettings(
            name="ctl3",
            bgp_address="127.0.0.43",
            xmpp_port=0,
            tls_cert=str(pki.control.cert),
            tls_key=str(pki.control.key),
        )
    )
    await node.start()
    try:
        run = agents("compute1", node.xmpp_port, agent_files(pki, None))
        await until(lambda: run.session.up)
        assert node.introspect()["xmpp_tls"] == "on"
    finally:
        await node.stop()


# ---- the daemons' config files --------------------------------------------------------


def settings(tmp_path: Path, data: dict[str, Any]) -> Settings:
    path = tmp_path / "daemon.yaml"
    path.write_text(json.dumps(data))
    return Settings.load(path)


def control_config(**xmpp_tls: Any) -> dict[str, Any]:
    return {
        "api": {"url": "http://127.0.0.1:1", "token": "t" * 16},
        "bgp": {"address": "127.0.0.44"},
        "xmpp": {"tls": xmpp_tls},
    }


def test_control_config_reads_tls(pki: Pki, tmp_path: Path) -> None:
    cfg = control_config(
        cert=str(pki.control.cert),
        key=str(pki.control.key),
        ca=str(pki.ca.path),
        verify_client=True,
    )
    ns = control_main.load(settings(tmp_path, cfg))[0]
    assert (ns.tls_cert, ns.tls_ca, ns.tls_verify_client) == (
        str(pki.control.cert),
        str(pki.ca.path),
        True,
    )
    assert control_main.load(settings(tmp_path, control_config()))[0].tls_cert == ""


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"cert": "/nonexistent.pem"}, "xmpp.tls.cert", "cannot read"),
        ({"cert": "CONTROL", "key": "COMPUTE1KEY"}, "xmpp.tls.key", "is not the private key"),
        ({"cert": "CA", "key": "CA"}, "xmpp.tls.key", "no PEM private key"),
        ({"cert": "CONTROL", "key": "CONTROLKEY", "verify_client": True}, "xmpp.tls.ca", "CA"),
        (
            {"cert": "CONTROL", "key": "CONTROLKEY", "ca": "CONTROLKEY", "verify_client": True},
            "xmpp.tls.ca",
            "no PEM CA certificate",
        ),
        ({"cert": "CONTROL", "verify_client": "maybe"}, "xmpp.tls.verify_client", "true or"),
        ({"key": "CONTROLKEY"}, "xmpp.tls.cert", "is required"),
    ],
)
def test_bad_control_tls_config_names_file_and_field(
    pki: Pki, tmp_path: Path, fields: dict[str, Any], field: str, words: str
) -> None:
    files = {
        "CONTROL": str(pki.control.cert),
        "CONTROLKEY": str(pki.control.key),
        "COMPUTE1KEY": str(pki.compute1.key),
        "CA": str(pki.ca.path),
    }
    fields = {k: files.get(v, v) if isinstance(v, str) else v for k, v in fields.items()}
    with pytest.raises(ConfigError) as err:
        control_main.load(settings(tmp_path, control_config(**fields)))
    assert str(err.value).startswith(f"{tmp_path / 'daemon.yaml'}: {field}: "), str(err.value)
    assert words in str(err.value)


def agent_config(**xmpp_tls: Any) -> dict[str, Any]:
    return {
        "name": "compute1",
        "controls": ["127.0.0.1:5269"],
        "fabric": {"address": "198.18.2.11"},
        "xmpp": {"tls": xmpp_tls},
    }


def test_agent_config_reads_tls(pki: Pki, tmp_path: Path) -> None:
    files = agent_files(pki, pki.compute1)
    cfg = agent_config(ca=files.ca, cert=files.cert, key=files.key, server_name="ctl1.test")
    agent = agent_main.load(settings(tmp_path, cfg))[0]
    assert agent.xmpp_tls == files and agent.xmpp_server_name == "ctl1.test"
    assert agent_main.load(settings(tmp_path, agent_config()))[0].xmpp_tls is None
    # enabled without a CA: the system's CAs verify the node.
    system = agent_main.load(settings(tmp_path, agent_config(enabled=True)))[0]
    assert system.xmpp_tls == tls.TlsFiles()


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"ca": "/nonexistent/ca.pem"}, "xmpp.tls.ca"),
        ({"ca": "KEY"}, "xmpp.tls.ca"),
        ({"ca": "CA", "key": "KEY"}, "xmpp.tls.cert"),
        ({"ca": "CA", "cert": "CERT", "key": "OTHERKEY"}, "xmpp.tls.key"),
        ({"enabled": "sometimes"}, "xmpp.tls.enabled"),
    ],
)
def test_bad_agent_tls_config_names_file_and_field(
    pki: Pki, tmp_path: Path, fields: dict[str, str], field: str
) -> None:
    files = {
        "CA": str(pki.ca.path),
        "CERT": str(pki.compute1.cert),
        "KEY": str(pki.compute1.key),
        "OTHERKEY": str(pki.compute2.key),
    }
    fields = {k: files.get(v, v) for k, v in fields.items()}
    with pytest.raises(ConfigError) as err:
        agent_main.load(settings(tmp_path, agent_config(**fields)))
    assert str(err.value).startswith(f"{tmp_path / 'daemon.yaml'}: {field}: "), str(err.value)


# ---- vrstack-control as a process: refusals in its JSON log ---------------------------


def daemon_config(pki: Pki, url: str, bgp_address: str, **tls_more: Any) -> dict[str, Any]:
    """vrstack-control's config with mutual TLS on XMPP (and `tls_more`, e.g. a CRL)."""
    return {
        "name": "ctl-tls",
        "api": {"url": url, "token": ADMIN_TOKEN},
        "listen": {"host": "127.0.0.1", "port": 0},
        "bgp": {"address": bgp_address, "port": free_port()},
        "xmpp": {
            "host": "127.0.0.1",
            "port": 0,
            "tls": {
                "cert": str(pki.control.cert),
                "key": str(pki.control.key),
                "ca": str(pki.ca.path),
                "verify_client": True,
                **tls_more,
            },
        },
        "log": {"level": "info"},
    }


@pytest.mark.asyncio
async def test_daemon_logs_refused_agents(
    pki: Pki, cluster: Cluster, tmp_path: Path, agents: Callable[..., Running]
) -> None:
    c = cluster.client
    project = await c.create("project", {"name": "demo"})
    blue = await cluster.network(project, "blue", "198.18.10.0/24")
    inst = instance_name(await cluster.instance_of(blue))
    cfg = daemon_config(pki, cluster.url, "127.0.0.45")
    daemon = Daemon("vrstack.control.main", cfg, tmp_path, "control")
    daemon.start()
    try:
        port = await until(
            lambda: next((x.get("port") for x in daemon.logs() if x["msg"] == "xmpp listening"), 0)
        )
        good = agents("compute1", port, agent_files(pki, pki.compute1))
        rogue = agents("compute3", port, agent_files(pki, pki.rogue))
        await until(lambda: good.session.up and rogue.session.last_error)
        await good.session.subscribe(inst)
        line = await until(
            lambda: next((x for x in daemon.logs() if x["msg"] == "agent refused"), None)
        )
        assert line["level"] == "warning" and line["addr"].startswith("127.0.0.1:")
        assert "certificate not accepted" in line["reason"], line
        connected = [x for x in daemon.logs() if x["msg"] == "agent connected"]
        assert [(x["agent"], x["cert"]) for x in connected] == [("compute1", "compute1")]
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


# ---- revoked certificates (issue 11): the CRL, read on SIGHUP or when it changes -------


async def introspect(daemon: Daemon) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(daemon.url + "/introspect") as resp:
        assert resp.status == 200
        body: dict[str, Any] = await resp.json()
        return body


def logged(daemon: Daemon, msg: str) -> list[dict[str, Any]]:
    return [line for line in daemon.logs() if line.get("msg") == msg]


@pytest.mark.asyncio
async def test_revoked_agent_is_refused_after_sighup_and_others_still_connect(
    pki: Pki, cluster: Cluster, tmp_path: Path, agents: Callable[..., Running]
) -> None:
    """remove-compute's path: an agent is up; its serial goes into the CRL and the
    daemon gets SIGHUP; the same agent is refused on reconnect, logged with its
    certificate's subject and serial, and another agent still connects."""
    crl = tmp_path / "crl.pem"
    pki.ca.write_crl(crl)  # the deployment's CRL, nothing revoked yet
    cfg = daemon_config(pki, cluster.url, "127.0.0.46", crl=str(crl))
    daemon = Daemon("vrstack.control.main", cfg, tmp_path, "control")
    daemon.start()
    try:
        intro = await introspect(daemon)
        assert intro["xmpp_tls"] == "mutual" and intro["xmpp_crl"] is True
        port = intro["xmpp_port"]
        first = agents("compute1", port, agent_files(pki, pki.compute1))
        await until(lambda: first.session.up)

        pki.ca.write_crl(crl, (pki.compute1,))
        loaded = len(logged(daemon, "CRL loaded"))
        assert daemon.proc is not None
        os.kill(daemon.proc.pid, signal.SIGHUP)
        await until(lambda: len(logged(daemon, "CRL loaded")) > loaded)
        await until(lambda: logged(daemon, "reloaded"))
        assert first.session.up  # a session made before the revocation stays

        first.stop.set()
        await asyncio.wait_for(first.task, 10)
        again = agents("compute1", port, agent_files(pki, pki.compute1))
        refused = await until(lambda: logged(daemon, "agent refused"))
        reason = refused[0]["reason"]
        assert reason.startswith("certificate not accepted: certificate revoked"), reason
        assert f"(subject CN=compute1, serial {serial(pki.compute1):x})" in reason, reason
        other = agents("compute2", port, agent_files(pki, pki.compute2))
        await until(lambda: other.session.up)
        await asyncio.sleep(1.0)  # the revoked agent keeps retrying
        assert not again.session.up
        intro = await introspect(daemon)
        assert [a["name"] for a in intro["agents"]] == ["compute2"]
        assert intro["agents_refused"] >= 1
        assert all("revoked" in r["reason"] for r in logged(daemon, "agent refused"))
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


@pytest.mark.asyncio
async def test_without_the_crl_file_agents_connect_and_the_file_is_read_when_it_comes(
    pki: Pki, cluster: Cluster, tmp_path: Path, agents: Callable[..., Running]
) -> None:
    crl = tmp_path / "crl.pem"  # named but not there: as before the CRL
    cfg = daemon_config(pki, cluster.url, "127.0.0.47", crl=str(crl))
    daemon = Daemon("vrstack.control.main", cfg, tmp_path, "control")
    daemon.start()
    try:
        intro = await introspect(daemon)
        assert intro["xmpp_crl"] is False
        first = agents("compute1", intro["xmpp_port"], agent_files(pki, pki.compute1))
        await until(lambda: first.session.up)
        no_crl = "no CRL configured: client certificates are not checked for revocation"
        assert len(logged(daemon, no_crl)) == 1
        # The pki role copies the file in, no SIGHUP: the next handshake reads it.
        pki.ca.write_crl(crl, (pki.compute1,))
        first.stop.set()
        await asyncio.wait_for(first.task, 10)
        again = agents("compute1", intro["xmpp_port"], agent_files(pki, pki.compute1))
        refused = await until(lambda: logged(daemon, "agent refused"))
        assert "certificate revoked" in refused[0]["reason"]
        assert not again.session.up
        assert (await introspect(daemon))["xmpp_crl"] is True
        assert daemon.terminate() == 0
    finally:
        daemon.kill()


def test_a_crl_needs_verify_client(pki: Pki, tmp_path: Path) -> None:
    cfg = control_config(cert=str(pki.control.cert), key=str(pki.control.key), crl="/x.pem")
    with pytest.raises(ConfigError, match=r"xmpp\.tls\.crl: needs verify_client: true"):
        control_main.load(settings(tmp_path, cfg))


def test_a_crl_file_that_is_no_crl_stops_the_daemon_naming_the_field(
    pki: Pki, tmp_path: Path
) -> None:
    cfg = control_config(
        cert=str(pki.control.cert),
        key=str(pki.control.key),
        ca=str(pki.ca.path),
        verify_client=True,
        crl=str(pki.ca.path),  # a certificate, not a CRL
    )
    with pytest.raises(ConfigError, match=r"xmpp\.tls\.crl: .* holds no PEM CRL"):
        control_main.load(settings(tmp_path, cfg))
