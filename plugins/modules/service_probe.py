#!/usr/bin/python
# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
from __future__ import annotations

DOCUMENTATION = r"""
module: service_probe
short_description: Check that a service answers on an address with a real protocol reply
version_added: 0.1.0
description:
  - Connects to O(host) and O(port) from the host the task runs on, speaks TLS first when
    O(tls_ca) is given (the server checked against that CA by the address dialled), sends
    O(send) and reads until the reply matches O(expect) - a protocol answer, not just an open
    port. Fails naming the address and what came back.
  - One task where vrstack.cloud.common's C(tasks_from=probe) cost three; that entry point
    calls this module. For a service just (re)started, retry the task (C(until)).
  - Never changes anything.
options:
  host:
    description: The address to connect to.
    type: str
    required: true
  port:
    description: The TCP port.
    type: int
    required: true
  send:
    description: What to send first; escapes such as C(\\r\\n) and C(\\x00) are decoded. Empty sends nothing.
    type: str
    default: ""
  expect:
    description: A regular expression the reply must match.
    type: str
    required: true
  tls_ca:
    description: A CA file on the host; given, the probe speaks TLS and checks the server against it.
    type: str
    default: ""
  service:
    description: The service's name, for the messages.
    type: str
    default: ""
extends_documentation_fragment:
  - vrstack.cloud.read_only
attributes:
  platform:
    description: Any host with Python.
author:
  - vrstack developers (@vrstack)
"""

EXAMPLES = r"""
- name: Check that memcached answers on the fabric address
  vrstack.cloud.service_probe:
    service: memcached
    host: 198.18.1.16
    port: 11211
    send: "version\\r\\n"
    expect: "VERSION [0-9.]+"
  register: memcached_probe
  retries: 15
  delay: 2
  until: memcached_probe is succeeded
"""

RETURN = r"""
reply:
  description: The part of the reply that matched O(expect).
  returned: success
  type: str
  sample: VERSION 1.6.18
"""

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.vrstack.cloud.plugins.module_utils.runner import finish
from ansible_collections.vrstack.cloud.plugins.module_utils.service_probe import (
    ProbeError,
    probe,
)


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "host": {"type": "str", "required": True},
            "port": {"type": "int", "required": True},
            "send": {"type": "str", "default": ""},
            "expect": {"type": "str", "required": True},
            "tls_ca": {"type": "str", "default": ""},
            "service": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    p = module.params
    finish(
        module,
        f"service_probe {p['service']}".strip(),
        lambda: {"reply": probe(p["host"], p["port"], p["send"], p["expect"], p["tls_ca"])},
        ProbeError,
        read_only=True,
    )


if __name__ == "__main__":
    main()
