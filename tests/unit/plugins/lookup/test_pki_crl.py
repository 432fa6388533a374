"""The deployment CA's CRL (vrstack.cloud.pki_crl, issue 11): an empty CRL is signed once
and kept; revoking a node puts its serial in, moves its certificate away and drops its
key so the next one has a new serial; the CRL is signed again before its next update
(keeping what it revokes) and afresh for a new CA; OpenSSL agrees at each step."""

from __future__ import annotations

import datetime
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest
from ansible.errors import AnsibleLookupError
from ansible.parsing.dataloader import DataLoader
from ansible.plugins.loader import lookup_loader
from ansible.template import Templar
from cryptography import x509

from ansible_collections.vrstack.cloud.plugins.lookup.pki import ensure_crl, ensure_node, utcnow

NODE = "lab-cmp1"


def node(store: Path, name: str = NODE, **kwargs: Any) -> dict[str, Any]:
    return ensure_node(store, "lab", name, [], ["198.18.1.21"], **kwargs)


def crl(store: Path, *revoke: str, **kwargs: Any) -> dict[str, Any]:
    return ensure_crl(store, "lab", revoke=revoke, **kwargs)


def load(path: str | Path) -> x509.CertificateRevocationList:
    return x509.load_pem_x509_crl(Path(path).read_bytes())


def openssl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["openssl", *args], capture_output=True, text=True, check=False)


def verify(ca: str, crl_path: str, cert: str) -> subprocess.CompletedProcess[str]:
    return openssl("verify", "-crl_check", "-CAfile", ca, "-CRLfile", crl_path, cert)


def test_an_empty_crl_is_signed_once_and_kept(tmp_path: Path) -> None:
    first = crl(tmp_path)
    assert first["changed"] and first["reason"] == "no CRL yet"
    assert first["revoked"] == [] and first["revoked_now"] == {} and first["number"] == 1
    assert stat.S_IMODE(Path(first["crl"]).stat().st_mode) == 0o600
    # Signed by the CA, valid for OpenSSL (empty is fine), next update a year out.
    done = openssl("crl", "-in", first["crl"], "-CAfile", first["ca_cert"], "-verify", "-noout")
    assert done.returncode == 0 and "verify OK" in done.stderr + done.stdout, done
    got = load(first["crl"])
    assert list(got) == []
    assert got.next_update_utc is not None
    assert 364 <= (got.next_update_utc - utcnow()).days <= 365
    # A node certificate verifies against CA and CRL.
    issued = node(tmp_path)
    assert verify(first["ca_cert"], first["crl"], issued["cert"]).returncode == 0
    # Nothing to do: not signed again, byte for byte the same.
    before = Path(first["crl"]).read_bytes()
    again = crl(tmp_path)
    assert not again["changed"] and again["number"] == 1
    assert Path(first["crl"]).read_bytes() == before


def test_revoking_a_node_moves_its_certificate_away_and_the_next_is_new(tmp_path: Path) -> None:
    old = node(tmp_path)
    other = node(tmp_path, "lab-cmp2")
    crl(tmp_path)
    done = crl(tmp_path, NODE)
    assert done["changed"] and done["reason"] == f"revokes {old['serial']}"
    assert done["revoked_now"] == {NODE: old["serial"]} and done["revoked"] == [old["serial"]]
    assert done["number"] == 2
    assert [f"{r.serial_number:x}" for r in load(done["crl"])] == [old["serial"]]
    # The revoked certificate is kept (public) by serial; the key is gone.
    kept = tmp_path / "pki" / "revoked" / f"{old['serial']}.crt"
    assert kept.exists() and not Path(old["cert"]).exists() and not Path(old["key"]).exists()
    refused = verify(done["ca_cert"], done["crl"], str(kept))
    assert refused.returncode != 0 and "certificate revoked" in refused.stdout + refused.stderr
    # Other nodes are untouched and still verify.
    assert node(tmp_path, "lab-cmp2")["serial"] == other["serial"]
    assert verify(done["ca_cert"], done["crl"], other["cert"]).returncode == 0
    # Revoking it again: nothing left to revoke, nothing signed.
    assert not crl(tmp_path, NODE)["changed"]
    # The host comes back with the same name: a new pair, a new serial, not revoked.
    new = node(tmp_path)
    assert new["issued"] and new["reason"] == "no certificate yet"
    assert new["serial"] != old["serial"]
    assert verify(done["ca_cert"], done["crl"], new["cert"]).returncode == 0


def test_a_stored_certificate_the_crl_revokes_is_never_handed_out_again(tmp_path: Path) -> None:
    # Revoked by serial (by hand), the store still holding it: the next lookup replaces it.
    old = node(tmp_path)
    assert crl(tmp_path, serials=[old["serial"].upper()])["revoked"] == [old["serial"]]
    new = node(tmp_path)
    assert new["issued"] and new["reason"] == "revoked by the CRL"
    assert new["serial"] != old["serial"]


def test_the_crl_is_signed_again_before_its_next_update_keeping_what_it_revokes(
    tmp_path: Path,
) -> None:
    start = utcnow()
    node(tmp_path, now=start)
    first = crl(tmp_path, NODE, now=start)
    revoked_at = load(first["crl"])[0].revocation_date_utc
    # 31 days before the next update: kept; 29 days before: signed again.
    keep = start + datetime.timedelta(days=365 - 31)
    assert not crl(tmp_path, now=keep)["changed"]
    due = start + datetime.timedelta(days=365 - 29)
    renewed = crl(tmp_path, now=due)
    assert renewed["changed"] and "within 30 days" in renewed["reason"]
    assert renewed["revoked"] == first["revoked"] and renewed["number"] == first["number"] + 1
    got = load(renewed["crl"])
    assert got[0].revocation_date_utc == revoked_at  # the date it was revoked, not re-dated
    assert got.next_update_utc is not None
    assert got.next_update_utc - due > datetime.timedelta(days=364)


def test_a_new_ca_starts_a_new_crl(tmp_path: Path) -> None:
    node(tmp_path)
    crl(tmp_path, NODE)
    for name in ("ca.crt", "ca.key"):
        (tmp_path / name).rename(tmp_path / f"{name}.old")
    fresh = crl(tmp_path)
    assert fresh["changed"] and fresh["reason"] == "not signed by the current CA"
    assert fresh["revoked"] == []  # the old CA's certificates are not trusted any more
    done = openssl("crl", "-in", fresh["crl"], "-CAfile", fresh["ca_cert"], "-verify", "-noout")
    assert done.returncode == 0, done


@pytest.mark.parametrize(
    ("kwargs", "words"),
    [
        ({"serials": ["not-hex"]}, "is not a hex serial"),
        ({"serials": ["0"]}, "is not a certificate serial"),
        ({"days": 30, "renew_days": 30}, "must be less than days"),
        ({"days": 0}, "must be >= 1"),
    ],
)
def test_bad_options_are_refused(tmp_path: Path, kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(AnsibleLookupError, match=words):
        crl(tmp_path, **kwargs)
    assert not (tmp_path / "crl.pem").exists()


def test_a_bad_node_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(AnsibleLookupError, match="must match"):
        crl(tmp_path, "../ca")


def test_the_lookup_revokes_by_name_and_returns_one_entry(tmp_path: Path) -> None:
    issued = node(tmp_path)
    loader = DataLoader()
    plugin = lookup_loader.get(
        "vrstack.cloud.pki_crl", loader=loader, templar=Templar(loader=loader)
    )
    got = plugin.run([NODE], {}, dir=str(tmp_path), days=100, renew_days=10)
    assert len(got) == 1
    assert got[0]["revoked_now"] == {NODE: issued["serial"]}
    next_update = load(got[0]["crl"]).next_update_utc
    assert next_update is not None and 99 <= (next_update - utcnow()).days <= 100
