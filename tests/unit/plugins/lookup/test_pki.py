"""The pki lookup: the deployment CA and node certificates on the deploy host.

Certificates are checked with `cryptography` and with OpenSSL's own `openssl
verify`, the way the services (OpenSSL-based) will check them."""

from __future__ import annotations

import datetime
import ipaddress
import json
import os
import shutil
import stat
import subprocess
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import lookup_loader
from ansible.template import Templar
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ansible_collections.vrstack.cloud.plugins.lookup.pki import (
    cert_pem,
    create_ca,
    ensure_node,
    key_pem,
    new_key,
    utcnow,
)

NODE = "lab-cmp1"
DNS = ["lab-cmp1.example.org"]
IPS = ["198.18.1.21", "198.18.255.3"]


def lookup() -> Any:
    loader = DataLoader()
    return lookup_loader.get("vrstack.cloud.pki", loader=loader, templar=Templar(loader=loader))


def node(store: Path, **kwargs: Any) -> dict[str, Any]:
    args: dict[str, Any] = {"dns_names": DNS, "ip_addresses": IPS} | kwargs
    return ensure_node(store, "lab", args.pop("name", NODE), **args)


def load(path: str | Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(Path(path).read_bytes())


def openssl_verify(ca: str | Path, cert: str | Path, purpose: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["openssl", "verify", "-CAfile", str(ca), "-purpose", purpose, str(cert)],
        capture_output=True,
        text=True,
        check=False,
    )


def mode(path: str | Path) -> int:
    return stat.S_IMODE(Path(path).stat().st_mode)


def test_a_node_certificate_names_the_node_and_verifies(tmp_path: Path) -> None:
    store = tmp_path / "lab"
    result = node(store)
    cert, ca = load(result["cert"]), load(result["ca_cert"])

    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["lab-cmp1", "lab-cmp1.example.org"]
    assert san.get_values_for_type(x509.IPAddress) == [ipaddress.ip_address(i) for i in IPS]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == NODE
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.digital_signature and not usage.key_cert_sign
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    assert cert.public_key().curve.name == "secp256r1"
    left = cert.not_valid_after_utc - utcnow()
    assert datetime.timedelta(days=364) < left <= datetime.timedelta(days=365)

    ca_constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert ca_constraints.ca and ca_constraints.path_length == 0
    cert.verify_directly_issued_by(ca)
    for purpose in ("sslserver", "sslclient"):
        done = openssl_verify(result["ca_cert"], result["cert"], purpose)
        assert done.returncode == 0, done.stdout + done.stderr
    key = serialization.load_pem_private_key(Path(result["key"]).read_bytes(), password=None)
    assert key.public_key() == cert.public_key()
    assert result["issued"] and result["reason"] == "no certificate yet"
    assert result["not_after"] == cert.not_valid_after_utc.isoformat()
    assert result["serial"] == f"{cert.serial_number:x}"


def test_everything_is_kept_private_beside_the_secrets(tmp_path: Path) -> None:
    store = tmp_path / "lab"
    result = node(store)
    assert Path(result["ca_cert"]) == store / "ca.crt"
    assert Path(result["cert"]) == store / "pki" / f"{NODE}.crt"
    assert Path(result["key"]) == store / "pki" / f"{NODE}.key"
    assert mode(store) == 0o700 and mode(store / "pki") == 0o700
    for name in ("ca.crt", "ca.key", f"pki/{NODE}.crt", f"pki/{NODE}.key"):
        assert mode(store / name) == 0o600, name
        assert (store / name).stat().st_uid == os.getuid()


def test_the_result_holds_no_key_material(tmp_path: Path) -> None:
    store = tmp_path / "lab"
    text = json.dumps(node(store))
    assert "PRIVATE KEY" not in text and "BEGIN" not in text
    for key_file in (store / "ca.key", store / "pki" / f"{NODE}.key"):
        body = "".join(key_file.read_text().splitlines()[1:-1])
        assert body[:24] not in text


def test_a_valid_certificate_is_kept(tmp_path: Path) -> None:
    store = tmp_path / "lab"
    first = node(store)
    before = {p: p.read_bytes() for p in store.rglob("*.*")}
    again = node(store, dns_names=[n.upper() + "." for n in DNS], ip_addresses=reversed(IPS))
    assert not again["issued"] and again["serial"] == first["serial"]
    assert again["reason"] == "valid, names unchanged, not due for renewal"
    assert {p: p.read_bytes() for p in store.rglob("*.*")} == before


def test_one_ca_for_every_node(tmp_path: Path) -> None:
    store = tmp_path / "lab"
    a, b = node(store), node(store, name="lab-cmp2", ip_addresses=["198.18.2.21"])
    assert a["ca_cert"] == b["ca_cert"] and a["serial"] != b["serial"]
    load(b["cert"]).verify_directly_issued_by(load(a["ca_cert"]))


def replace_key(store: Path) -> None:
    (store / "pki" / f"{NODE}.key").write_bytes(key_pem(new_key()))


def move_ca(store: Path) -> None:
    (store / "ca.crt").unlink()
    (store / "ca.key").unlink()


def garble_cert(store: Path) -> None:
    (store / "pki" / f"{NODE}.crt").write_text("not a certificate\n")


# What makes a stored certificate be replaced: (change to the store, call args, reason).
REISSUE = [
    ("an added address", None, {"ip_addresses": [*IPS, "198.18.1.99"]}, "added: 198.18.1.99"),
    ("a removed name", None, {"dns_names": []}, "removed: lab-cmp1.example.org"),
    (
        "expiry within renew_days",
        None,
        {"now": utcnow() + datetime.timedelta(days=340)},
        "within 30 days",
    ),
    ("a longer renew_days", None, {"renew_days": 366, "days": 400}, "within 366 days"),
    ("another key", replace_key, {}, "the stored key does not match the certificate"),
    ("a new CA", move_ca, {}, "not signed by the current CA"),
    ("an unreadable certificate", garble_cert, {}, "no certificate yet"),
    ("force", None, {"force": True}, "re-issue forced"),
]


@pytest.mark.parametrize(("why", "change", "args", "reason"), REISSUE, ids=[r[0] for r in REISSUE])
def test_reissued_when(tmp_path: Path, why: str, change: Any, args: dict, reason: str) -> None:
    store = tmp_path / "lab"
    first = node(store)
    if change:
        change(store)
    again = node(store, **args)
    assert again["issued"], why
    assert reason in again["reason"]
    assert again["serial"] != first["serial"]
    new_cert = load(again["cert"])
    new_cert.verify_directly_issued_by(load(again["ca_cert"]))
    key = serialization.load_pem_private_key(Path(again["key"]).read_bytes(), password=None)
    assert key.public_key() == new_cert.public_key()
    # And then it is stable again.
    assert not node(store, **{k: v for k, v in args.items() if k != "force"})["issued"]


def test_not_renewed_outside_renew_days(tmp_path: Path) -> None:
    store = tmp_path / "lab"
    first = node(store)
    later = node(store, now=utcnow() + datetime.timedelta(days=330))
    assert not later["issued"] and later["serial"] == first["serial"]


def write_ca(directory: Path, days: int, key_mode: int = 0o600) -> tuple[Path, Path]:
    directory.mkdir(mode=0o700, exist_ok=True)
    cert, key = create_ca("corp", days, utcnow())
    cert_path, key_path = directory / "corp-ca.pem", directory / "corp-ca.key"
    cert_path.write_bytes(cert_pem(cert))
    key_path.write_bytes(key_pem(key))
    os.chmod(key_path, key_mode)
    return cert_path, key_path


def test_the_operators_ca_signs_and_caps_validity(tmp_path: Path) -> None:
    ca_cert, ca_key = write_ca(tmp_path / "operator", days=100)
    result = node(tmp_path / "lab", ca_cert=ca_cert, ca_key=ca_key)
    assert result["ca_cert"] == str(ca_cert)
    assert not (tmp_path / "lab" / "ca.key").exists()
    cert = load(result["cert"])
    assert cert.not_valid_after_utc == load(ca_cert).not_valid_after_utc
    assert openssl_verify(ca_cert, result["cert"], "sslserver").returncode == 0
    # Switching from the generated CA to the operator's re-issues.
    generated = node(tmp_path / "other")
    switched = node(tmp_path / "other", ca_cert=ca_cert, ca_key=ca_key)
    assert switched["reason"] == "not signed by the current CA"
    assert switched["serial"] != generated["serial"]


def not_a_ca(directory: Path) -> tuple[Path, Path]:
    ca_cert, ca_key = write_ca(directory, days=100)
    leaf = node(directory / "store", ca_cert=ca_cert, ca_key=ca_key)
    shutil.copy(leaf["cert"], ca_cert)
    shutil.copy(leaf["key"], ca_key)
    return ca_cert, ca_key


def wrong_key(directory: Path) -> tuple[Path, Path]:
    ca_cert, ca_key = write_ca(directory, days=100)
    ca_key.write_bytes(key_pem(new_key()))
    return ca_cert, ca_key


BAD_CA = [
    ("readable key", lambda d: write_ca(d, 100, 0o644), r"corp-ca\.key: mode 0644 lets others"),
    ("not a CA", not_a_ca, r"corp-ca\.pem: not a CA certificate"),
    ("wrong key", wrong_key, r"corp-ca\.key: not the private key of .*corp-ca\.pem"),
    ("expired", lambda d: write_ca(d, 0), r"corp-ca\.pem: the CA certificate expired"),
    ("only the cert", lambda d: (write_ca(d, 100)[0], None), "set both or neither"),
]


@pytest.mark.parametrize(("why", "make", "message"), BAD_CA, ids=[b[0] for b in BAD_CA])
def test_a_bad_operator_ca_is_refused(tmp_path: Path, why: str, make: Any, message: str) -> None:
    ca_cert, ca_key = make(tmp_path / "operator")
    with pytest.raises(AnsibleLookupError, match=message):
        node(tmp_path / "lab", ca_cert=ca_cert, ca_key=ca_key)
    assert not (tmp_path / "lab" / "pki" / f"{NODE}.crt").exists(), why


BAD_INPUT = [
    ({"name": "../etc"}, r"node name '\.\./etc' must match"),
    ({"ip_addresses": ["198.18.1.300"]}, r"node lab-cmp1: ip_addresses: '198\.18\.1\.300' is not"),
    ({"dns_names": ["bad_name!"]}, r"node lab-cmp1: dns_names: 'bad_name!' is not a DNS name"),
    ({"renew_days": 365}, r"renew_days \(365\) must be less than days \(365\)"),
    ({"days": 0}, "days must be an integer >= 1"),
]


@pytest.mark.parametrize(("args", "message"), BAD_INPUT)
def test_bad_input_names_the_field(tmp_path: Path, args: dict, message: str) -> None:
    with pytest.raises(AnsibleLookupError, match=message):
        node(tmp_path / "lab", **args)
    assert not (tmp_path / "lab" / "ca.key").exists()


def test_a_store_others_can_read_is_refused(tmp_path: Path) -> None:
    store = tmp_path / "lab"
    node(store)
    os.chmod(store / "pki" / f"{NODE}.key", 0o640)
    with pytest.raises(AnsibleLookupError, match=rf"{NODE}\.key: mode 0640 lets others read"):
        node(store)
    os.chmod(store, 0o750)
    with pytest.raises(AnsibleLookupError, match=r"lab: mode 0750 lets others read"):
        node(store)


def issue_in_process(args: tuple[Path, str]) -> dict[str, Any]:
    store, name = args
    return ensure_node(store, "lab", name, [], ["198.18.1.30"])


def test_concurrent_issuers_share_one_ca(tmp_path: Path) -> None:
    store = tmp_path / "lab"
    names = [f"lab-cmp{i}" for i in range(6)]
    with ProcessPoolExecutor(max_workers=3) as pool:
        results = list(pool.map(issue_in_process, [(store, n) for n in names], timeout=120))
    ca = load(store / "ca.crt")
    for result in results:
        load(result["cert"]).verify_directly_issued_by(ca)
    assert sorted(p.name for p in (store / "pki").iterdir()) == sorted(
        f"{n}.{ext}" for n in names for ext in ("crt", "key")
    )


def test_the_lookup_reads_the_inventory_vars(tmp_path: Path) -> None:
    ca_cert, ca_key = write_ca(tmp_path / "operator", days=100)
    variables = {
        "vrstack_secrets_file": str(tmp_path / "lab" / "secrets.yml"),
        "vrstack_pki_ca_cert": str(ca_cert),
        "vrstack_pki_ca_key": str(ca_key),
        "vrstack_fabric": {"name": "lab"},
    }
    (result,) = lookup().run([NODE], variables, ip_addresses=IPS, days=90, renew_days=10)
    assert result["cert"] == str(tmp_path / "lab" / "pki" / f"{NODE}.crt")
    assert result["ca_cert"] == str(ca_cert)
    assert result["ip_addresses"] == IPS and result["dns_names"] == [NODE]
    left = load(result["cert"]).not_valid_after_utc - utcnow()
    assert datetime.timedelta(days=89) < left <= datetime.timedelta(days=90)
    with pytest.raises(AnsibleLookupError, match="give exactly one node name, not 2"):
        lookup().run([NODE, "other"], variables)


def test_the_lookup_defaults_to_the_secrets_directory(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    (result,) = lookup().run([NODE], {"vrstack_fabric": {"name": "lab"}})
    store = tmp_path / ".local" / "share" / "vrstack" / "lab"
    assert result["ca_cert"] == str(store / "ca.crt")
    subject = load(store / "ca.crt").subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert subject[0].value == "vrstack lab deployment CA"
