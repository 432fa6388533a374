# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The oslo.messaging transport URL of the OpenStack services: built here once, so nova
(controllers and computes) and neutron cannot drift apart in how they quote a password or
list the messaging nodes."""

from __future__ import annotations

DOCUMENTATION = r"""
name: transport_url
author: vrstack developers (@vrstack)
short_description: The oslo.messaging transport URL for RabbitMQ on the messaging nodes
positional: _input, user, password
description:
  - Returns C(rabbit://USER:PASSWORD@HOST:PORT,USER:PASSWORD@HOST:PORT/VHOST), one
    C(USER:PASSWORD@HOST:PORT) per messaging node in the order given, as oslo.messaging
    reads it (it fails over between the nodes).
  - The user, the password and the virtual host are percent-encoded (every character but
    letters, digits and C(_.-~)), so a password with C(@), C(:), C(/) or C(%) survives;
    oslo.messaging decodes them. IPv6 addresses are put in brackets.
  - TLS is not part of the URL (oslo.messaging takes it from C([oslo_messaging_rabbit] ssl));
    the O(tls) flag only picks the default port when O(port) is not given.
  - The result holds a password - pass it only through tasks with C(no_log=true) or into
    files with restricted modes.
options:
  _input:
    description: The messaging nodes' addresses or names (C(vrstack_endpoints.messaging)).
    type: list
    elements: str
    required: true
  user:
    description: The RabbitMQ user.
    type: str
    required: true
  password:
    description: The user's password.
    type: str
    required: true
  vhost:
    description: The RabbitMQ virtual host.
    type: str
    default: /
  port:
    description: The AMQP port; 5671 with O(tls), else 5672, when not given.
    type: int
  tls:
    description: Whether the clients use AMQP over TLS (only chooses the default O(port)).
    type: bool
    default: false
"""

EXAMPLES = r"""
- name: Nova's transport URL, AMQP over TLS on every messaging node
  ansible.builtin.set_fact:
    nova_transport_url: >-
      {{ vrstack_endpoints.messaging | vrstack.cloud.transport_url('nova',
         lookup('vrstack.cloud.secret', 'rabbitmq_nova_password'), vhost='openstack', tls=true) }}
  no_log: true
# ['198.18.1.11', '198.18.2.11'] -> rabbit://nova:PW@198.18.1.11:5671,nova:PW@198.18.2.11:5671/openstack
"""

RETURN = r"""
_value:
  description: The transport URL.
  type: str
"""

from collections.abc import Iterable
from typing import Any
from urllib.parse import quote

from ansible.errors import AnsibleFilterError
from ansible.module_utils.parsing.convert_bool import boolean


def _host(host: Any) -> str:
    if not isinstance(host, str) or not host.strip():
        raise AnsibleFilterError(
            f"transport_url: a messaging host must be a name or address, not {host!r}"
        )
    host = host.strip()
    # An IPv6 address in a URL's authority must be in brackets.
    if ":" in host and not host.startswith("["):
        return f"[{host}]"
    return host


def _port(port: Any, tls: bool) -> int:
    if port is None or port == "":
        return 5671 if tls else 5672
    try:
        number = int(port)
    except (TypeError, ValueError):
        raise AnsibleFilterError(f"transport_url: port must be a number, not {port!r}") from None
    if isinstance(port, bool) or not 0 < number < 65536:
        raise AnsibleFilterError(f"transport_url: port {port!r} is not a TCP port")
    return number


def transport_url(
    hosts: Iterable[str] | str,
    user: str,
    password: str,
    vhost: str = "/",
    port: int | str | None = None,
    tls: bool | str = False,
) -> str:
    """rabbit://user:password@host:port,.../vhost with user, password and vhost quoted."""
    # A single host given as a string is one host, not a list of its characters.
    names = [hosts] if isinstance(hosts, str) else list(hosts or [])
    if not names:
        raise AnsibleFilterError("transport_url: no messaging hosts")
    if not isinstance(user, str) or not user:
        raise AnsibleFilterError("transport_url: the RabbitMQ user is empty")
    if not isinstance(password, str):
        # Not the value: it is a secret.
        raise AnsibleFilterError(
            f"transport_url: the password must be a string, not {type(password).__name__}"
        )
    if not isinstance(vhost, str) or not vhost:
        raise AnsibleFilterError("transport_url: the virtual host is empty")
    # "true"/"false" strings too, as Ansible's `bool` filter reads them.
    number = _port(port, boolean(tls, strict=False))
    creds = f"{quote(user, safe='')}:{quote(password, safe='')}"
    nodes = ",".join(f"{creds}@{_host(name)}:{number}" for name in names)
    return f"rabbit://{nodes}/{quote(vhost, safe='')}"


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {"transport_url": transport_url}
