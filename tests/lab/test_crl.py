"""The deployment CA's CRL on the deployed lab (issue 11, docs/security.md "Revoked
certificates"). Does not remove a compute: the test revokes a certificate of its own.

- Every control node has /etc/vrstack/pki/crl.pem, the deploy host's CRL, signed by the
  deployment CA (`openssl crl -verify`), mode 0644.
- The test issues a throwaway client certificate from the deployment CA on the deploy host
  (the vrstack.cloud.pki store, as a node named crltest-*), and from a compute a TLS
  client with it is accepted by every control node's XMPP port. It then revokes it (the
  vrstack.cloud.pki_crl store code), pushes the CRL with the pki role's tasks_from crl
  (what remove-compute.yml runs, SIGHUP to vrstack-control), and the same client is
  refused by every control node, which logs the certificate's serial, without a restart.

The revoked serial stays in the lab's CRL (harmless: nothing else has that certificate).
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import uuid
from pathlib import Path

import test_security as security
import yaml
from labcloud import STATE
from test_security import Lab, Node, on_node

from ansible_collections.vrstack.cloud.plugins.lookup.pki import ensure_crl, ensure_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition

PKI = "/etc/vrstack/pki"
XMPP_PORT = 5269

# Run on a compute: a TLS client with the certificate on stdin against each control node's
# XMPP port. It sends nothing: an accepted certificate leaves the node waiting for the
# stream (no answer within 3 s); a refused one ends in the node's alert.
CLIENT_SCRIPT = r"""
import json, os, socket, ssl, sys, tempfile
d = json.load(sys.stdin)
tmp = tempfile.mkdtemp()
cert, key = os.path.join(tmp, "c.crt"), os.path.join(tmp, "c.key")
with open(cert, "w") as f:
    f.write(d["cert"])
with open(os.open(key, os.O_WRONLY | os.O_CREAT, 0o600), "w") as f:
    f.write(d["key"])
ctx = ssl.create_default_context(cafile=d["ca"])
ctx.load_cert_chain(cert, key)
os.unlink(key); os.unlink(cert); os.rmdir(tmp)
out = {}
for ip in d["targets"]:
    try:
        with socket.create_connection((ip, d["port"]), timeout=10) as raw:
            with ctx.wrap_socket(raw, server_hostname=ip) as s:
                s.settimeout(3)
                try:
                    out[ip] = "closed" if s.recv(1) == b"" else "answered"
                except socket.timeout:
                    out[ip] = "accepted"
    except ssl.SSLError as exc:
        out[ip] = "refused: " + str(exc)
    except OSError as exc:
        out[ip] = "error: " + str(exc)
print(json.dumps(out))
"""

PUSH_PLAY = [
    {
        "name": "Push the CRL to the control nodes (remove-compute.yml's step)",
        "hosts": "control",
        "gather_facts": False,
        "tasks": [
            {
                "name": "Install the CRL",
                "ansible.builtin.include_role": {"name": "vrstack.cloud.pki", "tasks_from": "crl"},
                "vars": {"pki_crl_reload": ["vrstack-control"]},
            }
        ],
    }
]


def control_nodes(lab: Lab) -> list[Node]:
    nodes = lab.by_role("control")
    assert nodes, "no control node in the lab"
    return nodes


def connect(lab: Lab, cert: Path, key: Path) -> dict[str, str]:
    """What each control node's XMPP port does with this client certificate."""
    compute = lab.by_role("compute")[0]
    stdin = json.dumps(
        {
            "cert": cert.read_text(),
            "key": key.read_text(),
            "ca": f"{PKI}/ca.crt",
            "port": XMPP_PORT,
            "targets": [n.ip for n in control_nodes(lab)],
        }
    )
    out = on_node(lab, compute, "python3 -c " + shlex.quote(CLIENT_SCRIPT), stdin=stdin)
    assert out.returncode == 0, f"{compute.name}: {out.stderr.strip()[-2000:]}"
    return json.loads(out.stdout)


def main_pid(lab: Lab, node: Node) -> str:
    out = on_node(lab, node, "systemctl show -p MainPID --value vrstack-control")
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_every_control_node_has_the_ca_signed_crl(lab: Lab) -> None:
    store = (STATE / "crl.pem").read_bytes()
    for node in control_nodes(lab):
        out = on_node(
            lab,
            node,
            f"openssl crl -in {PKI}/crl.pem -CAfile {PKI}/ca.crt -verify -noout 2>&1 && "
            f"stat -c %a {PKI}/crl.pem && cat {PKI}/crl.pem",
        )
        assert out.returncode == 0, f"{node.name}: {out.stdout}{out.stderr}"
        lines = out.stdout.splitlines()
        assert lines[0] == "verify OK", f"{node.name}: {out.stdout}"
        assert lines[1] == "644", f"{node.name}: crl.pem is mode {lines[1]}"
        assert "\n".join(lines[2:]).strip() == store.decode().strip(), (
            f"{node.name}: crl.pem is not the deploy host's {STATE / 'crl.pem'}"
        )


def test_a_revoked_client_certificate_is_refused_by_every_control_node(
    lab: Lab, tmp_path: Path
) -> None:
    name = f"crltest-{uuid.uuid4().hex[:8]}"
    issued = ensure_node(STATE, str(lab.model.get("name", "vrstack")), name, [], [])
    # A copy of the pair: revoking deletes the store's key.
    cert, key = tmp_path / "c.crt", tmp_path / "c.key"
    cert.write_bytes(Path(issued["cert"]).read_bytes())
    key.write_bytes(Path(issued["key"]).read_bytes())
    key.chmod(0o600)

    before = connect(lab, cert, key)
    assert set(before.values()) == {"accepted"}, before

    pids = {n.name: main_pid(lab, n) for n in control_nodes(lab)}
    revoked = ensure_crl(STATE, str(lab.model.get("name", "vrstack")), revoke=[name])
    assert revoked["revoked_now"] == {name: issued["serial"]}
    play = tmp_path / "push.yml"
    play.write_text(yaml.safe_dump(PUSH_PLAY))
    done = subprocess.run(
        [sys.executable, "tools/lab.py", "hold", "--",
         "ansible-playbook", "-i", security.INVENTORY, str(play)],
        cwd=security.REPO, capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert done.returncode == 0, f"{done.stdout[-4000:]}\n{done.stderr[-2000:]}"

    after = connect(lab, cert, key)
    # With TLS 1.3 the server checks the client's certificate after the client's side of
    # the handshake is done: the client sees either the server's alert or only the close.
    # Either way no session; the server's log below must name the revoked serial.
    for ip, what in after.items():
        assert what == "closed" or (what.startswith("refused") and "revoked" in what), (
            f"{ip}: {what}"
        )
    for node in control_nodes(lab):
        assert main_pid(lab, node) == pids[node.name], f"{node.name}: vrstack-control restarted"
        log = on_node(
            lab, node, "journalctl -u vrstack-control --since -15min -o cat | grep 'agent refused'"
        )
        assert issued["serial"] in log.stdout and "certificate revoked" in log.stdout, (
            f"{node.name}: no refusal with serial {issued['serial']} in the log:\n{log.stdout[-2000:]}"
        )
