"""The pki role played for real against localhost, with its node directory and the
deploy-host store in a temporary directory: check mode changes nothing, the first
run installs, the second reports changed=0, verify passes, and a certificate that
expires within 30 days makes verify fail (naming it) until a run renews it.

The key's group is `nogroup` (Debian's) and no user is added to it, so the test
changes nothing on this machine outside its temporary directory."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from cryptography import x509

ROOT = Path(__file__).resolve().parents[4]
GROUP = "nogroup"


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("pki")
    host = {
        "ansible_connection": "local",
        "ansible_python_interpreter": sys.executable,
        "vrstack_os": "debian12",
        "vrstack_roles": ["controller"],
        "vrstack_fabric_ip": "198.18.1.21",
        "vrstack_loopback_ip": "198.18.255.3",
        "vrstack_vips": {"internal": "198.18.1.10"},
        "vrstack_fabric": {"name": "test"},
        "vrstack_secrets_file": str(tmp / "store" / "secrets.yml"),
        "pki_dir": str(tmp / "node" / "pki"),
        "pki_group": GROUP,
        "pki_group_members": ["vrstack-test-no-such-user"],
        "pki_domain": "example.org",
    }
    (tmp / "inventory.yml").write_text(yaml.safe_dump({"all": {"hosts": {"node1": host}}}))
    apply = [
        {"name": "Apply", "hosts": "all", "gather_facts": False, "roles": ["vrstack.cloud.pki"]}
    ]
    verify = [
        {
            "name": "Verify",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Verify",
                    "ansible.builtin.include_role": {
                        "name": "vrstack.cloud.pki",
                        "tasks_from": "verify",
                    },
                }
            ],
        }
    ]
    (tmp / "apply.yml").write_text(yaml.safe_dump(apply))
    (tmp / "verify.yml").write_text(yaml.safe_dump(verify))
    (tmp / "both.yml").write_text(yaml.safe_dump(apply + verify))
    return tmp


def play(lab: Path, playbook: str, *args: str) -> tuple[int, int, str]:
    """(return code, changed count, output) of one ansible-playbook run."""
    env = dict(os.environ, ANSIBLE_CONFIG=str(ROOT / "ansible.cfg"), ANSIBLE_NOCOLOR="1")
    env["ANSIBLE_COLLECTIONS_PATH"] = str(ROOT / ".collections")
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("ansible-playbook")),
            "-i",
            str(lab / "inventory.yml"),
            str(lab / playbook),
            *args,
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    # Whitespace folded: the YAML callback wraps long messages.
    out = " ".join((done.stdout + done.stderr).split())
    recap = re.search(r"node1\s+: ok=\d+\s+changed=(\d+)", out)
    assert recap, out
    return done.returncode, int(recap.group(1)), out


def cert(lab: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((lab / "node" / "pki" / "node.crt").read_bytes())


def test_check_mode_on_a_fresh_node_changes_nothing(lab: Path) -> None:
    rc, changed, out = play(lab, "apply.yml", "--check", "--diff")
    assert rc == 0, out
    assert changed > 0
    assert not (lab / "node").exists()
    # The deploy-host store is written in check mode too (like the secrets file),
    # so the diff a check run shows is what the real run installs.
    assert "new certificate" in out and "no certificate yet" in out
    assert (lab / "store" / "pki" / "node1.crt").exists()


def test_first_run_installs_second_changes_nothing(lab: Path) -> None:
    rc, changed, out = play(lab, "apply.yml", "--diff", "-v")
    # The directory, the two certificates, the key and the CRL.
    assert rc == 0 and changed == 4, out
    assert "no certificate yet" not in out  # the check run issued it
    pki = lab / "node" / "pki"
    modes = {p.name: (stat.S_IMODE(p.stat().st_mode), p.group()) for p in pki.iterdir()}
    assert modes == {
        "ca.crt": (0o644, "root"),
        "node.crt": (0o644, "root"),
        "node.key": (0o640, GROUP),
        "crl.pem": (0o644, "root"),
    }
    # The CA's CRL (revoking nothing yet), the same file as the deploy host's.
    assert (pki / "crl.pem").read_bytes() == (lab / "store" / "crl.pem").read_bytes()
    assert not list(x509.load_pem_x509_crl((pki / "crl.pem").read_bytes()))
    san = cert(lab).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["node1", "node1.example.org"]
    assert sorted(str(ip) for ip in san.get_values_for_type(x509.IPAddress)) == [
        "198.18.1.10",
        "198.18.1.21",
        "198.18.255.3",
    ]
    # No key material in the output, even from the key's task.
    key_body = (pki / "node.key").read_text().splitlines()[1]
    assert "PRIVATE KEY" not in out and key_body not in out

    rc, changed, out = play(lab, "both.yml", "--diff")
    assert rc == 0 and changed == 0, out


def test_changed_names_show_in_check_mode_then_apply(lab: Path) -> None:
    serial = cert(lab).serial_number
    extra = '{"pki_extra_ip_addresses": ["198.18.1.99"]}'
    rc, changed, out = play(lab, "apply.yml", "--check", "-e", extra)
    assert rc == 0 and changed == 2, out  # node.crt and node.key would change
    assert "added: 198.18.1.99" in out
    assert cert(lab).serial_number == serial
    rc, changed, out = play(lab, "apply.yml", "-e", extra)
    assert rc == 0 and changed == 2, out
    assert cert(lab).serial_number != serial


def test_verify_names_a_certificate_about_to_expire_and_a_run_renews_it(lab: Path) -> None:
    short = '{"pki_force_renew": true, "pki_days": 20, "pki_renew_days": 10}'
    rc, _changed, out = play(lab, "apply.yml", "-e", short)
    assert rc == 0, out
    rc, changed, out = play(lab, "verify.yml")
    assert rc != 0 and changed == 0
    assert re.search(r"certificates expiring within 30 days:\s+\S+/node\.crt \(the node", out), out
    assert "ca.crt" not in out.split("certificates expiring within")[1].split("renew")[0]

    rc, changed, out = play(lab, "both.yml")
    assert rc == 0 and changed == 2, out
    assert "within 30 days" in out  # the reason the role gave for the new certificate
    renewed = cert(lab)
    assert (renewed.not_valid_after_utc - renewed.not_valid_before_utc).days >= 365


def test_verify_finds_a_wrong_mode_and_a_foreign_key(lab: Path) -> None:
    key = lab / "node" / "pki" / "node.key"
    os.chmod(key, 0o644)
    rc, _changed, out = play(lab, "verify.yml")
    assert rc != 0 and re.search(r"node\.key\s+is root:nogroup 0644, not root:nogroup 0640", out), (
        out
    )
    os.chmod(key, 0o640)
    saved = key.read_bytes()
    store_key = lab / "store" / "pki" / "node1.key"
    other = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        capture_output=True,
        check=True,
    ).stdout
    key.write_bytes(other)
    rc, _changed, out = play(lab, "verify.yml")
    assert rc != 0 and "node.key is not the key of node.crt" in out, out
    # The deploy host still has the right one: the role's next run copies it back.
    assert store_key.read_bytes() == saved
    key.write_bytes(saved)


def test_revoking_the_node_through_tasks_from_crl_then_a_run_issues_a_new_certificate(
    lab: Path,
) -> None:
    """remove-compute.yml's step: the node's certificate goes into the CRL, the node's
    crl.pem changes (verify then fails: node.crt is revoked), and the role's next run
    issues a certificate with a new serial that verifies against the new CRL."""
    revoke = [
        {
            "name": "Revoke",
            "hosts": "all",
            "gather_facts": False,
            "tasks": [
                {
                    "name": "Revoke",
                    "ansible.builtin.include_role": {
                        "name": "vrstack.cloud.pki",
                        "tasks_from": "crl",
                    },
                    "vars": {"pki_crl_revoke": ["node1"]},
                }
            ],
        }
    ]
    (lab / "revoke.yml").write_text(yaml.safe_dump(revoke))
    old = cert(lab).serial_number
    rc, changed, out = play(lab, "revoke.yml", "--check")
    assert rc == 0 and changed == 0, out  # check mode revokes nothing
    rc, changed, out = play(lab, "revoke.yml")
    assert rc == 0 and changed == 1, out  # crl.pem
    assert f"revoked node1's certificate {old:x}" in out, out
    crl = x509.load_pem_x509_crl((lab / "node" / "pki" / "crl.pem").read_bytes())
    assert [r.serial_number for r in crl] == [old]
    rc, _changed, out = play(lab, "verify.yml")
    assert rc != 0 and "certificate revoked" in out, out
    rc, changed, out = play(lab, "revoke.yml")
    assert rc == 0 and changed == 0, out  # revoked already

    rc, changed, out = play(lab, "both.yml")
    assert rc == 0 and changed == 2, out  # node.crt and node.key
    assert cert(lab).serial_number != old


def test_pki_crl_false_removes_the_crl(lab: Path) -> None:
    rc, changed, out = play(lab, "both.yml", "-e", '{"pki_crl": false}')
    assert rc == 0 and changed == 1, out
    assert not (lab / "node" / "pki" / "crl.pem").exists()
    rc, changed, out = play(lab, "apply.yml")
    assert rc == 0 and changed == 1, out
    assert (lab / "node" / "pki" / "crl.pem").exists()
