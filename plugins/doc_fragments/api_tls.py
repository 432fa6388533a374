# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""How the modules that call the SDN APIs (sdn_resource, analytics_query) check an
https URL's certificate; module_utils/api_client.py applies both options."""

from __future__ import annotations


class ModuleDocFragment:
    DOCUMENTATION = r"""
options:
  validate_certs:
    description: Verify the API's TLS certificate (https URLs).
    type: bool
    default: true
  ca_path:
    description:
      - The CA certificate (PEM) that signed the API's certificate, on the host the module
        runs on; the deployment CA is V(/etc/vrstack/pki/ca.crt) on every node.
      - Without it an https URL is checked against the system's CAs. The name or address in
        O(url) must be in the API's certificate.
    type: path
"""
