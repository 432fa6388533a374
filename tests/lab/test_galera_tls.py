"""Galera over TLS on the ha-lab (issue 11, roles/mariadb `mariadb_galera_tls`, on by
default): every database node replicates over TLS only (no plain fallback left over from
a switch), its replication port 4567 completes a TLS handshake that the deployment CA
verifies and the system CAs do not, the SST settings run rsync through stunnel, and a
node forced into a full state transfer (grastate.dat removed) rejoins Synced through
stunnel.

Runs on the ha-lab only (three database nodes), after the site playbook:

    VRSTACK_CLUSTER=ha-lab ./scripts/run-pytest.sh -rA tests/lab/test_galera_tls.py

VRSTACK_GALERA_SST_TEST=0 leaves out the forced state transfer (it takes one backup
database node out for the transfer, and a donor's writes pause while rsync copies).
"""

from __future__ import annotations

import os
import re
import shlex
import time

import pytest
import test_ha as ha
from test_ha import HaLab, haproxy_servers, ssh, vip_holders, wsrep

if os.environ.get("VRSTACK_CLUSTER") != "ha-lab":
    pytest.skip(
        "Galera needs three database nodes: VRSTACK_CLUSTER=ha-lab", allow_module_level=True
    )

lab = ha.lab  # the module-scoped fixture of test_ha (skips when the ha-lab is not deployed)

PKI = "/etc/vrstack/pki"
CA = f"{PKI}/ca.crt"
SYSTEM_CAS = "/etc/ssl/certs/ca-certificates.crt"
MYSQL = "mysql --batch --skip-column-names -e"
REJOIN_LIMIT = 600.0  # seconds for a node to finish a full state transfer and sync


def provider_options(lab: HaLab, host: str) -> dict[str, str]:
    out = ssh(lab, host, f"{MYSQL} 'SELECT @@GLOBAL.wsrep_provider_options'")
    assert out.returncode == 0, f"{host}: cannot read wsrep_provider_options: {out.stderr}"
    pairs = (item.split("=", 1) for item in out.stdout.strip().split(";") if "=" in item)
    return {key.strip(): value.strip() for key, value in pairs}


def is_on(value: str) -> bool:
    return value.lower() in ("yes", "true", "on", "1")


def test_every_node_replicates_over_tls_only(lab: HaLab) -> None:
    for host in lab.hosts:
        opts = provider_options(lab, host)
        assert is_on(opts.get("socket.ssl", "")), f"{host}: socket.ssl = {opts.get('socket.ssl')}"
        assert opts.get("socket.ssl_ca") == CA, (
            f"{host}: socket.ssl_ca = {opts.get('socket.ssl_ca')}"
        )
        assert opts.get("socket.ssl_cert") == f"{PKI}/node.crt", (
            f"{host}: {opts.get('socket.ssl_cert')}"
        )
        # The switch's in-between settings are gone: no plain peer is accepted.
        assert not is_on(opts.get("socket.dynamic", "no")), f"{host}: socket.dynamic is still on"
        assert not opts.get("ist.recv_addr", "").startswith("tcp://"), (
            f"{host}: IST still on a plain address: {opts.get('ist.recv_addr')}"
        )
        state = wsrep(lab, host)
        assert state.get("wsrep_local_state_comment") == "Synced", f"{host}: {state}"
        assert state.get("wsrep_cluster_size") == str(len(lab.hosts)), f"{host}: {state}"


def handshake(lab: HaLab, host: str, peer: str, cafile: str) -> tuple[int, str]:
    """From `host`, a TLS handshake with `peer`'s Galera port, presenting `host`'s node
    certificate (Galera asks for one) and verifying the peer with `cafile`."""
    command = (
        f"timeout 20 openssl s_client -brief -connect {lab.hosts[peer]}:4567 "
        f"-CAfile {cafile} -cert {PKI}/node.crt -key {PKI}/node.key -verify_return_error "
        "</dev/null"
    )
    out = ssh(lab, host, command)
    return out.returncode, out.stdout + out.stderr


def test_replication_port_speaks_tls_verified_by_the_deployment_ca(lab: HaLab) -> None:
    names = list(lab.hosts)
    for index, host in enumerate(names):
        peer = names[(index + 1) % len(names)]  # 4567 is open to the database nodes only
        rc, text = handshake(lab, host, peer, CA)
        assert rc == 0 and re.search(r"Verification: OK", text), (
            f"{host} -> {peer}:4567 is not TLS verified by the deployment CA:\n{text[-1500:]}"
        )
        # A certificate of the deployment CA, not one any public CA vouches for.
        rc, text = handshake(lab, host, peer, SYSTEM_CAS)
        assert rc != 0, f"{host} -> {peer}:4567 verified with the system CAs:\n{text[-1500:]}"


def test_state_transfers_are_set_to_run_through_stunnel(lab: HaLab) -> None:
    for host in lab.hosts:
        out = ssh(lab, host, "my_print_defaults sst; command -v stunnel")
        lines = out.stdout.split()
        assert "--ssl-mode=VERIFY_CA" in lines, f"{host}: [sst] is {lines}"
        assert f"--tca={CA}" in lines and f"--tcert={PKI}/node.crt" in lines, f"{host}: {lines}"
        assert any(line.endswith("/stunnel") for line in lines), f"{host}: no stunnel: {out.stderr}"


def _backup_node(lab: HaLab) -> str:
    """A database node haproxy does not send writes to (a backup server)."""
    holder = vip_holders(lab)[0]
    servers = haproxy_servers(lab, holder, "mariadb")
    backups = [name for name, row in servers.items() if row.get("bck") == "1"]
    assert backups, f"haproxy on {holder} has no backup mariadb server: {servers}"
    return sorted(backups)[-1]


@pytest.mark.skipif(
    os.environ.get("VRSTACK_GALERA_SST_TEST", "1") == "0", reason="VRSTACK_GALERA_SST_TEST=0"
)
def test_a_node_forced_into_sst_rejoins_synced_through_stunnel(lab: HaLab) -> None:
    for host in lab.hosts:  # only from a healthy cluster: two nodes keep the quorum
        state = wsrep(lab, host)
        assert state.get("wsrep_local_state_comment") == "Synced", f"{host}: {state}"
    node = _backup_node(lab)
    since = ssh(lab, node, "date '+%Y-%m-%d %H:%M:%S'").stdout.strip()
    # Without grastate.dat the node has no position: it must take a full snapshot (SST).
    out = ssh(
        lab,
        node,
        "systemctl stop mariadb && rm -f /var/lib/mysql/grastate.dat "
        "&& systemctl start --no-block mariadb",
        timeout=180,
    )
    assert out.returncode == 0, f"{node}: cannot restart MariaDB without grastate.dat: {out.stderr}"
    deadline = time.monotonic() + REJOIN_LIMIT
    state: dict[str, str] = {}
    while time.monotonic() < deadline:
        state = wsrep(lab, node)
        if state.get("wsrep_local_state_comment") == "Synced":
            break
        time.sleep(5)
    log = ssh(lab, node, f"journalctl -u mariadb --no-pager --since {shlex.quote(since)}").stdout
    assert state.get("wsrep_local_state_comment") == "Synced", (
        f"{node} did not sync within {REJOIN_LIMIT:.0f} s after a forced SST (rerun the "
        f"mariadb role to repair it): {state}\n{log[-3000:]}"
    )
    assert state.get("wsrep_cluster_size") == str(len(lab.hosts)), f"{node}: {state}"
    # The joiner's SST script logs how it transferred: rsync through stunnel, verifying.
    assert "Using stunnel for SSL encryption" in log, (
        f"{node}: SST not through stunnel:\n{log[-3000:]}"
    )
    assert "ssl-mode='VERIFY_CA'" in log, f"{node}: SST without verification:\n{log[-3000:]}"
