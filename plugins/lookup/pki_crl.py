# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The deployment CA's certificate revocation list, kept beside the CA on the deploy
host: signed again before its next update, and where node certificates are revoked."""

from __future__ import annotations

DOCUMENTATION = r"""
name: pki_crl
author: vrstack developers (@vrstack)
short_description: The deployment CA's CRL, kept on the deploy host; revokes node certificates
description:
  - Returns where the deploy host keeps the CRL of the deployment CA (C(crl.pem) beside
    C(ca.crt), the store of the C(vrstack.cloud.pki) lookup) and what it revokes, signing it
    first when needed. An empty CRL is valid.
  - The CRL is signed again (with the next CRL number) only when there is none, when the
    CA in use did not sign it, when a certificate to revoke is not in it yet, or when its
    next update is within C(renew_days); otherwise it is returned unchanged (C(changed) false).
  - Each node named in C(_terms) has the certificate the store holds for it revoked; that
    certificate is then kept as C(pki/revoked/SERIAL.crt) and its key deleted, so the node's
    next certificate is a new pair with a new serial. A node without a certificate in the
    store is skipped (revoked already, or never issued).
  - Like C(vrstack.cloud.pki) it works on the deploy host in check mode too; a playbook that
    must not revoke in check mode passes no names then.
options:
  _terms:
    description: Nodes (inventory hostnames) whose certificate to revoke; none to only keep the CRL fresh.
    type: list
    elements: str
    default: []
  serials:
    description: More certificates to revoke, by serial number in hex.
    type: list
    elements: str
    default: []
  days:
    description: Days from signing to the CRL's next update (never past the CA's end).
    type: int
    default: 365
  renew_days:
    description: Sign the CRL again when its next update is within this many days.
    type: int
    default: 30
  ca_days:
    description: How long a CA generated now is valid (when there is no CA yet).
    type: int
    default: 3650
  ca_cert:
    description: The operator's CA certificate; defaults to C(vrstack_pki_ca_cert).
    type: path
  ca_key:
    description: The operator's CA key; defaults to C(vrstack_pki_ca_key).
    type: path
  dir:
    description: Directory of the store; defaults to that of the C(vrstack.cloud.pki) lookup.
    type: path
"""

EXAMPLES = r"""
- name: Revoke the certificate of a compute taken out
  ansible.builtin.debug:
    msg: "{{ query('vrstack.cloud.pki_crl', 'lab-cmp2') | first }}"

- name: Keep the CRL fresh and install it
  ansible.builtin.copy:
    src: "{{ (query('vrstack.cloud.pki_crl') | first).crl }}"
    dest: /etc/vrstack/pki/crl.pem
    mode: "0644"
"""

RETURN = r"""
_raw:
  description: One entry.
  type: list
  elements: dict
  contains:
    crl:
      description: Path of the CRL (PEM) on the deploy host.
      type: str
    ca_cert:
      description: Path of the CA certificate that signed it.
      type: str
    revoked:
      description: Serials (hex) the CRL revokes.
      type: list
      elements: str
    revoked_now:
      description: The nodes whose certificate this call revoked, with its serial (hex).
      type: dict
    next_update:
      description: The CRL's next update (ISO 8601, UTC).
      type: str
    number:
      description: The CRL number.
      type: int
    changed:
      description: Whether this call signed the CRL.
      type: bool
    reason:
      description: Why it was signed, or why it was kept.
      type: str
"""

from typing import Any

from ansible.plugins.lookup import LookupBase

from ansible_collections.vrstack.cloud.plugins.lookup.pki import ensure_crl, store_of


class LookupModule(LookupBase):
    def run(
        self, terms: list[Any], variables: dict[str, Any] | None = None, **kwargs: Any
    ) -> list[dict[str, Any]]:
        self.set_options(var_options=variables, direct=kwargs)
        store = store_of(self, variables or {})
        return [
            ensure_crl(
                store.directory,
                store.cluster,
                # str(): templated names arrive as tagged str subclasses.
                revoke=[str(t) for t in terms],
                serials=[str(s) for s in self.get_option("serials")],
                days=int(self.get_option("days")),
                renew_days=int(self.get_option("renew_days")),
                ca_days=int(self.get_option("ca_days")),
                ca_cert=store.ca_cert,
                ca_key=store.ca_key,
            )
        ]
