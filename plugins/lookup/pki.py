# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment CA and the node certificates it signs: the one place they are
made. Everything lives on the deploy host beside the secrets file, readable by
its owner only; the role vrstack.cloud.pki copies a node's files to the node."""

from __future__ import annotations

DOCUMENTATION = r"""
name: pki
author: vrstack developers (@vrstack)
short_description: A node certificate signed by the deployment CA, kept on the deploy host
description:
  - Returns where the deploy host keeps the CA certificate and one node's certificate
    and private key, issuing them first when needed.
  - The CA is the operator's (C(ca_cert) and C(ca_key)) or else one generated the first time
    (ECDSA P-256, C(ca_days) long), kept as C(ca.crt) and C(ca.key) beside the secrets file.
  - The node's certificate (ECDSA P-256, serverAuth and clientAuth) names the node in its
    subject and carries C(dns_names) and C(ip_addresses) as subject alternative names.
    It is kept with its key under C(pki/) in the same directory.
  - A new key and certificate are issued only when there is none, when the stored key does
    not match, when the CA changed, when the wanted names differ from the certificate's,
    when it expires within C(renew_days), or when the store's CRL revokes it (see the
    C(vrstack.cloud.pki_crl) lookup). Otherwise the stored ones are returned unchanged.
  - Every file is written atomically with mode 0600, under a lock; directories are 0700, and
    a private key or directory others can read is refused rather than used.
  - The store is on the deploy host, so the lookup issues in check mode too (like
    C(vrstack.cloud.secret)); the managed node only changes when its files are copied.
  - The result holds paths and public facts only, never key material.
options:
  _terms:
    description: The node's name (its inventory hostname); exactly one.
    required: true
    type: list
    elements: str
  dns_names:
    description: DNS names for the certificate, besides the node's name.
    type: list
    elements: str
    default: []
  ip_addresses:
    description: IP addresses for the certificate (the node's fabric and loopback addresses).
    type: list
    elements: str
    default: []
  days:
    description: How long a new node certificate is valid (never past the CA's own end).
    type: int
    default: 365
  renew_days:
    description: Re-issue a certificate that expires within this many days.
    type: int
    default: 30
  force:
    description: Re-issue the certificate and a new key whatever their state (after a key leak).
    type: bool
    default: false
  ca_days:
    description: How long a generated CA is valid.
    type: int
    default: 3650
  ca_cert:
    description:
      - The operator's CA certificate (PEM) on the deploy host; requires C(ca_key).
      - Defaults to C(vrstack_pki_ca_cert); unset means the generated CA.
    type: path
  ca_key:
    description:
      - The operator's CA private key (PEM, not encrypted, readable by its owner only).
      - Defaults to C(vrstack_pki_ca_key).
    type: path
  dir:
    description:
      - Directory of the store.
      - Defaults to the directory of C(vrstack_secrets_file), else that of the
        C(vrstack.cloud.secret) lookup's default file.
    type: path
"""

EXAMPLES = r"""
- name: Issue this node's certificate on the deploy host
  ansible.builtin.set_fact:
    node_pki: >-
      {{ query('vrstack.cloud.pki', inventory_hostname,
               ip_addresses=[vrstack_fabric_ip, vrstack_loopback_ip]) | first }}

- name: Install the node's key
  ansible.builtin.copy:
    src: "{{ node_pki.key }}"
    dest: /etc/vrstack/pki/node.key
    mode: "0640"
  no_log: true
"""

RETURN = r"""
_raw:
  description: One entry for the node.
  type: list
  elements: dict
  contains:
    name:
      description: The node's name.
      type: str
    ca_cert:
      description: Path of the CA certificate on the deploy host.
      type: str
    cert:
      description: Path of the node's certificate on the deploy host.
      type: str
    key:
      description: Path of the node's private key on the deploy host (mode 0600).
      type: str
    serial:
      description: The certificate's serial number, in hex.
      type: str
    not_after:
      description: When the certificate expires (ISO 8601, UTC).
      type: str
    dns_names:
      description: The certificate's DNS names.
      type: list
      elements: str
    ip_addresses:
      description: The certificate's IP addresses.
      type: list
      elements: str
    issued:
      description: Whether this call issued a new certificate.
      type: bool
    reason:
      description: Why it was issued, or why the stored one was kept.
      type: str
"""

import datetime
import fcntl
import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ansible.errors import AnsibleLookupError
from ansible.plugins.lookup import LookupBase

try:
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    HAS_CRYPTOGRAPHY = True
except ImportError:  # reported by LookupModule.run
    HAS_CRYPTOGRAPHY = False

from ansible_collections.vrstack.cloud.plugins.lookup.secret import default_path
from ansible_collections.vrstack.cloud.plugins.module_utils.secret_store import replace_private

NODE_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$")
DNS_NAME_RE = re.compile(r"^(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*$")
# Node certificates start a little in the past: a node whose clock lags the deploy
# host's by a few minutes must not see a certificate that is not valid yet.
BACKDATE = datetime.timedelta(minutes=5)

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Authority:
    """The CA in use: its certificate, its key and where the certificate is kept."""

    cert: x509.Certificate
    key: Any
    cert_path: Path


@dataclass(frozen=True)
class Names:
    """The subject alternative names a node certificate must carry."""

    dns: frozenset[str]
    ips: frozenset[IpAddress]

    def describe(self) -> list[str]:
        return sorted(self.dns) + [str(ip) for ip in sorted(self.ips, key=sort_key)]


def sort_key(ip: IpAddress) -> tuple[int, int]:
    return (ip.version, int(ip))


def utcnow() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def check_private(path: Path) -> None:
    """Refuse a key file or directory that anyone but its owner can read."""
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        raise AnsibleLookupError(
            f"pki: {path}: mode {mode:04o} lets others read it; run 'chmod go= {path}' "
            "after checking who read it"
        )


def write_private(path: Path, data: bytes) -> None:
    """Write `data` atomically, mode 0600 from the start (the secrets store's writer)."""
    replace_private(path, data)


def private_dir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    check_private(path)
    return path


@contextmanager
def locked(directory: Path) -> Iterator[None]:
    """One issuer at a time: Ansible's forks call the lookup for many nodes at once."""
    lock = directory / "pki.lock"
    with open(os.open(lock, os.O_RDWR | os.O_CREAT, 0o600), "w", encoding="utf-8") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        yield


def new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: what OpenSSL (MariaDB, aiohttp, Python's ssl) and Erlang (RabbitMQ) all accept.
    return ec.generate_private_key(ec.SECP256R1())


def key_pem(key: Any) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def sign_hash(key: Any) -> hashes.HashAlgorithm | None:
    # Ed25519 and Ed448 keys (an operator's CA) sign without a separate hash.
    return (
        None
        if isinstance(key, ed25519.Ed25519PrivateKey | ed448.Ed448PrivateKey)
        else hashes.SHA256()
    )


def public_bytes(key: Any) -> bytes:
    return key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def read_cert(path: Path) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        raise AnsibleLookupError(f"pki: {path}: no such file") from None
    except ValueError as exc:
        raise AnsibleLookupError(f"pki: {path}: not a PEM certificate ({exc})") from None


def read_key(path: Path) -> Any:
    try:
        check_private(path)
        return serialization.load_pem_private_key(path.read_bytes(), password=None)
    except FileNotFoundError:
        raise AnsibleLookupError(f"pki: {path}: no such file") from None
    except (ValueError, TypeError) as exc:
        raise AnsibleLookupError(
            f"pki: {path}: not a PEM private key without a passphrase ({exc})"
        ) from None


def create_ca(cluster: str, days: int, now: datetime.datetime) -> tuple[x509.Certificate, Any]:
    key = new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vrstack"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"vrstack {cluster} deployment CA"),
        ]
    )
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    return cert, key


def check_authority(
    cert: x509.Certificate, cert_path: Path, key: Any, key_path: Path, now: datetime.datetime
) -> None:
    """An operator's (or a stored) CA must be a CA, match its key and still be valid."""
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise AnsibleLookupError(
            f"pki: {cert_path}: not a CA certificate (basicConstraints CA:TRUE missing)"
        )
    if public_bytes(cert.public_key()) != public_bytes(key.public_key()):
        raise AnsibleLookupError(f"pki: {key_path}: not the private key of {cert_path}")
    if cert.not_valid_after_utc <= now:
        raise AnsibleLookupError(
            f"pki: {cert_path}: the CA certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}; "
            "give a new CA (vrstack_pki_ca_cert/vrstack_pki_ca_key) or move the old ca.crt and "
            "ca.key away to generate one, then re-issue every node (playbooks/pki.yml)"
        )


def ensure_authority(
    directory: Path,
    cluster: str,
    days: int,
    now: datetime.datetime,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
) -> Authority:
    """The operator's CA when given, else the stored one, generated the first time."""
    if (ca_cert is None) != (ca_key is None):
        raise AnsibleLookupError(
            "pki: vrstack_pki_ca_cert and vrstack_pki_ca_key go together: set both or neither"
        )
    if ca_cert is None or ca_key is None:
        ca_cert, ca_key = directory / "ca.crt", directory / "ca.key"
        if not ca_cert.exists() and not ca_key.exists():
            cert, key = create_ca(cluster, days, now)
            # The key first: a certificate without its key would be unusable.
            write_private(ca_key, key_pem(key))
            write_private(ca_cert, cert_pem(cert))
            return Authority(cert, key, ca_cert)
    cert, key = read_cert(ca_cert), read_key(ca_key)
    check_authority(cert, ca_cert, key, ca_key, now)
    return Authority(cert, key, ca_cert)


def wanted_names(node: str, dns_names: Iterable[str], ip_addresses: Iterable[str]) -> Names:
    dns = {node.lower()}
    for name in dns_names:
        if not isinstance(name, str) or not DNS_NAME_RE.match(name.rstrip(".")):
            raise AnsibleLookupError(f"pki: node {node}: dns_names: {name!r} is not a DNS name")
        dns.add(name.rstrip(".").lower())
    ips: set[IpAddress] = set()
    for value in ip_addresses:
        try:
            ips.add(ipaddress.ip_address(str(value)))
        except ValueError:
            raise AnsibleLookupError(
                f"pki: node {node}: ip_addresses: {value!r} is not an IP address"
            ) from None
    return Names(frozenset(dns), frozenset(ips))


def cert_names(cert: x509.Certificate) -> Names:
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return Names(frozenset(), frozenset())
    return Names(
        frozenset(n.lower() for n in san.get_values_for_type(x509.DNSName)),
        frozenset(san.get_values_for_type(x509.IPAddress)),
    )


def renewal_reason(
    cert: x509.Certificate | None,
    key: Any,
    authority: Authority,
    names: Names,
    renew_days: int,
    now: datetime.datetime,
) -> str | None:
    """Why the stored certificate must be replaced, or None to keep it."""
    if cert is None or key is None:
        return "no certificate yet"
    if public_bytes(cert.public_key()) != public_bytes(key.public_key()):
        return "the stored key does not match the certificate"
    try:
        cert.verify_directly_issued_by(authority.cert)
    except (ValueError, TypeError, InvalidSignature):
        return "not signed by the current CA"
    have = cert_names(cert)
    if have != names:
        added = sorted(set(names.describe()) - set(have.describe()))
        removed = sorted(set(have.describe()) - set(names.describe()))
        return f"names changed (added: {', '.join(added) or '-'}; removed: {', '.join(removed) or '-'})"
    left = cert.not_valid_after_utc - now
    if left < datetime.timedelta(days=renew_days):
        return f"expires on {cert.not_valid_after_utc:%Y-%m-%d}, within {renew_days} days"
    return None


def issue(
    authority: Authority, node: str, names: Names, days: int, now: datetime.datetime
) -> tuple[x509.Certificate, Any]:
    key = new_key()
    not_after = min(now + datetime.timedelta(days=days), authority.cert.not_valid_after_utc)
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in sorted(names.dns)]
    sans += [x509.IPAddress(ip) for ip in sorted(names.ips, key=sort_key)]
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(authority.key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name(
                [
                    x509.NameAttribute(NameOID.ORGANIZATION_NAME, "vrstack"),
                    x509.NameAttribute(NameOID.COMMON_NAME, node),
                ]
            )
        )
        .issuer_name(authority.cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - BACKDATE)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(authority.key, sign_hash(authority.key))
    )
    return cert, key


def load_stored(cert_path: Path, key_path: Path) -> tuple[x509.Certificate | None, Any]:
    """The stored pair; an unreadable one counts as missing (it is replaced)."""
    if not cert_path.exists() or not key_path.exists():
        return None, None
    key = read_key(key_path)  # refuses a key others can read, rather than replacing it
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    except ValueError:
        return None, None
    return cert, key


def ensure_node(
    directory: Path,
    cluster: str,
    node: str,
    dns_names: Iterable[str],
    ip_addresses: Iterable[str],
    days: int = 365,
    renew_days: int = 30,
    force: bool = False,
    ca_days: int = 3650,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The node's certificate and key in the store, issued when `renewal_reason` says so."""
    if not isinstance(node, str) or not NODE_NAME_RE.match(node):
        raise AnsibleLookupError(f"pki: node name {node!r} must match {NODE_NAME_RE.pattern}")
    for field, value, low in (
        ("days", days, 1),
        ("renew_days", renew_days, 0),
        ("ca_days", ca_days, 1),
    ):
        if not isinstance(value, int) or value < low:
            raise AnsibleLookupError(
                f"pki: node {node}: {field} must be an integer >= {low}, not {value!r}"
            )
    if renew_days >= days:
        raise AnsibleLookupError(
            f"pki: node {node}: renew_days ({renew_days}) must be less than days ({days}), "
            "or every run would re-issue"
        )
    now = now or utcnow()
    names = wanted_names(node, dns_names, ip_addresses)
    nodes_dir = directory / "pki"
    private_dir(directory)
    with locked(directory):
        authority = ensure_authority(directory, cluster, ca_days, now, ca_cert, ca_key)
        private_dir(nodes_dir)
        cert_path, key_path = nodes_dir / f"{node}.crt", nodes_dir / f"{node}.key"
        stored, key = load_stored(cert_path, key_path)
        reason = renewal_reason(stored, key, authority, names, renew_days, now)
        if (
            reason is None
            and stored is not None
            and stored.serial_number in revoked_serials(directory, authority)
        ):
            reason = "revoked by the CRL"
        if force and reason is None:
            reason = "re-issue forced"
        if stored is None or reason is not None:
            reason = reason or "no certificate yet"
            cert, key = issue(authority, node, names, days, now)
            write_private(key_path, key_pem(key))
            write_private(cert_path, cert_pem(cert))
        else:
            cert = stored
    issued_names = cert_names(cert)
    return {
        "name": node,
        "ca_cert": str(authority.cert_path),
        "cert": str(cert_path),
        "key": str(key_path),
        "serial": f"{cert.serial_number:x}",
        "not_after": cert.not_valid_after_utc.isoformat(),
        "dns_names": sorted(issued_names.dns),
        "ip_addresses": [str(ip) for ip in sorted(issued_names.ips, key=sort_key)],
        "issued": reason is not None,
        "reason": reason or "valid, names unchanged, not due for renewal",
    }


# ---- the certificate revocation list ---------------------------------------------------

CRL_FILE = "crl.pem"
REVOKED_DIR = "revoked"  # revoked node certificates (public), by serial, for the record


def read_crl(path: Path) -> x509.CertificateRevocationList | None:
    """The stored CRL; a missing or unreadable one counts as none (it is signed again)."""
    try:
        return x509.load_pem_x509_crl(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None


def crl_of_authority(
    crl: x509.CertificateRevocationList | None, authority: Authority
) -> x509.CertificateRevocationList | None:
    """`crl` when the CA in use signed it; a CRL of a replaced CA revokes nothing it trusts."""
    if crl is None or crl.issuer != authority.cert.subject:
        return None
    return crl if crl.is_signature_valid(authority.cert.public_key()) else None


def revoked_serials(directory: Path, authority: Authority) -> dict[int, datetime.datetime]:
    """Serial -> revocation date of what the store's CRL revokes (empty without one)."""
    crl = crl_of_authority(read_crl(directory / CRL_FILE), authority)
    return {r.serial_number: r.revocation_date_utc for r in crl} if crl is not None else {}


def crl_number(crl: x509.CertificateRevocationList | None) -> int:
    if crl is None:
        return 0
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


def crl_reason(
    crl: x509.CertificateRevocationList | None,
    authority: Authority,
    wanted: Iterable[int],
    renew_days: int,
    now: datetime.datetime,
) -> str | None:
    """Why the CRL must be signed again, or None to keep it: the certificates' rule (renewed
    within `renew_days` of its next update), and any serial it does not revoke yet."""
    current = crl_of_authority(crl, authority)
    if crl is None:
        return "no CRL yet"
    if current is None:
        return "not signed by the current CA"
    missing = set(wanted) - {r.serial_number for r in current}
    if missing:
        return "revokes " + ", ".join(f"{s:x}" for s in sorted(missing))
    next_update = current.next_update_utc
    if next_update is None or next_update - now < datetime.timedelta(days=renew_days):
        when = f"{next_update:%Y-%m-%d}" if next_update else "never"
        return f"next update on {when}, within {renew_days} days"
    return None


def sign_crl(
    authority: Authority,
    revoked: Mapping[int, datetime.datetime],
    number: int,
    days: int,
    now: datetime.datetime,
) -> x509.CertificateRevocationList:
    """A CRL of `authority` revoking `revoked` (serial -> date), next update in `days`
    (never past the CA's own end), with the CRL number RFC 5280 asks for."""
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(authority.key.public_key())
    next_update = min(now + datetime.timedelta(days=days), authority.cert.not_valid_after_utc)
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(authority.cert.subject)
        .last_update(now - BACKDATE)
        .next_update(next_update)
        .add_extension(x509.CRLNumber(number), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
    )
    for serial, when in sorted(revoked.items()):
        builder = builder.add_revoked_certificate(
            x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
        )
    return builder.sign(authority.key, sign_hash(authority.key))


def parse_serial(value: Any) -> int:
    try:
        serial = int(str(value).lower().removeprefix("0x").replace(":", ""), 16)
    except ValueError:
        raise AnsibleLookupError(f"pki_crl: serials: {value!r} is not a hex serial") from None
    if serial <= 0:
        raise AnsibleLookupError(f"pki_crl: serials: {value!r} is not a certificate serial")
    return serial


def ensure_crl(
    directory: Path,
    cluster: str,
    revoke: Iterable[str] = (),
    serials: Iterable[Any] = (),
    days: int = 365,
    renew_days: int = 30,
    ca_days: int = 3650,
    ca_cert: Path | None = None,
    ca_key: Path | None = None,
    now: datetime.datetime | None = None,
) -> dict[str, Any]:
    """The store's CRL, signed again when `crl_reason` says so. `revoke` names nodes: the
    certificate the store holds for each is revoked, then moved to revoked/SERIAL.crt and
    its key deleted, so the node's next certificate is a new one with a new serial; a node
    without one is skipped (already revoked, or never issued). `serials` adds certificates
    by serial (hex)."""
    if not isinstance(days, int) or days < 1 or not isinstance(renew_days, int) or renew_days < 0:
        raise AnsibleLookupError(
            f"pki_crl: days ({days!r}) must be >= 1 and renew_days ({renew_days!r}) >= 0"
        )
    if renew_days >= days:
        raise AnsibleLookupError(
            f"pki_crl: renew_days ({renew_days}) must be less than days ({days}), "
            "or every run would sign the CRL again"
        )
    names = [str(n) for n in revoke]
    for name in names:
        if not NODE_NAME_RE.match(name):
            raise AnsibleLookupError(
                f"pki_crl: node name {name!r} must match {NODE_NAME_RE.pattern}"
            )
    wanted = {parse_serial(s) for s in serials}
    now = now or utcnow()
    path = directory / CRL_FILE
    private_dir(directory)
    with locked(directory):
        authority = ensure_authority(directory, cluster, ca_days, now, ca_cert, ca_key)
        nodes_dir = directory / "pki"
        certs: dict[str, tuple[Path, x509.Certificate]] = {}
        for name in names:
            cert_path = nodes_dir / f"{name}.crt"
            if cert_path.exists():
                certs[name] = (cert_path, read_cert(cert_path))
        wanted |= {pair[1].serial_number for pair in certs.values()}
        stored = read_crl(path)
        reason = crl_reason(stored, authority, wanted, renew_days, now)
        current = crl_of_authority(stored, authority)
        revoked = {r.serial_number: r.revocation_date_utc for r in current} if current else {}
        if reason is not None:
            revoked |= {s: now for s in wanted if s not in revoked}
            crl = sign_crl(authority, revoked, crl_number(stored) + 1, days, now)
            # The CRL is public; 0600 like the rest of the store (the role copies it 0644).
            write_private(path, crl.public_bytes(serialization.Encoding.PEM))
        else:
            crl = stored
        # Only once the CRL revokes them: the node's next run issues it a new pair.
        for name, (cert_path, cert) in certs.items():
            write_private(
                private_dir(nodes_dir / REVOKED_DIR) / f"{cert.serial_number:x}.crt", cert_pem(cert)
            )
            cert_path.unlink()
            (nodes_dir / f"{name}.key").unlink(missing_ok=True)
    if crl is None or crl.next_update_utc is None:
        raise AnsibleLookupError(f"pki: {path} holds no CRL with a next update date")
    return {
        "crl": str(path),
        "ca_cert": str(authority.cert_path),
        "revoked": [f"{s:x}" for s in sorted(revoked)],
        "revoked_now": {name: f"{pair[1].serial_number:x}" for name, pair in certs.items()},
        "next_update": crl.next_update_utc.isoformat(),
        "number": crl_number(crl),
        "changed": reason is not None,
        "reason": reason or "signed by the current CA, revokes all asked, not due",
    }


def store_dir(variables: Mapping[str, Any], secrets_file: str | None) -> Path:
    if secrets_file:
        return Path(os.path.expanduser(secrets_file)).parent
    return default_path(variables).parent


@dataclass(frozen=True)
class Store:
    """Where the store is and which CA it uses, from a lookup's options and variables."""

    directory: Path
    cluster: str
    ca_cert: Path | None
    ca_key: Path | None


def store_of(lookup: LookupBase, variables: Mapping[str, Any]) -> Store:
    """The options `dir`, `ca_cert` and `ca_key` (or the vrstack_* variables) of the
    lookups that use the store (vrstack.cloud.pki and vrstack.cloud.pki_crl)."""
    if not HAS_CRYPTOGRAPHY:
        raise AnsibleLookupError(
            "pki: needs the Python package 'cryptography' on the deploy host "
            "(make bootstrap installs it in the project's virtualenv)"
        )

    def option_or_var(option: str, var: str) -> str | None:
        value = lookup.get_option(option)
        if not value and variables.get(var):
            value = lookup._templar.template(variables[var])
        return str(value) if value else None

    directory = lookup.get_option("dir")
    if directory:
        target = Path(os.path.expanduser(str(directory)))
    else:
        target = store_dir(variables, option_or_var("dir", "vrstack_secrets_file"))
    ca_cert = option_or_var("ca_cert", "vrstack_pki_ca_cert")
    ca_key = option_or_var("ca_key", "vrstack_pki_ca_key")
    model = variables.get("vrstack_fabric")
    cluster = str(model.get("name", "vrstack")) if isinstance(model, Mapping) else "vrstack"
    return Store(
        target,
        cluster,
        Path(os.path.expanduser(ca_cert)) if ca_cert else None,
        Path(os.path.expanduser(ca_key)) if ca_key else None,
    )


class LookupModule(LookupBase):
    def run(
        self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        self.set_options(var_options=variables, direct=kwargs)
        variables = variables or {}
        store = store_of(self, variables)
        if len(terms) != 1:
            raise AnsibleLookupError(f"pki: give exactly one node name, not {len(terms)}")
        return [
            ensure_node(
                store.directory,
                store.cluster,
                # str(): templated names arrive as tagged str subclasses.
                str(terms[0]) if isinstance(terms[0], str) else terms[0],
                [str(n) for n in self.get_option("dns_names")],
                [str(a) for a in self.get_option("ip_addresses")],
                days=int(self.get_option("days")),
                renew_days=int(self.get_option("renew_days")),
                force=bool(self.get_option("force")),
                ca_days=int(self.get_option("ca_days")),
                ca_cert=store.ca_cert,
                ca_key=store.ca_key,
            )
        ]
