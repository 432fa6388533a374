"""vrstack.cloud.transport_url: the one builder of nova's and neutron's transport URL."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
from ansible.errors import AnsibleError, AnsibleFilterError
from ansible.parsing.dataloader import DataLoader
from ansible.template import Templar, trust_as_template

from ansible_collections.vrstack.cloud.plugins.filter.transport_url import (
    FilterModule,
    transport_url,
)

TWO = ["198.18.1.11", "198.18.2.11"]


def parse(url: str) -> dict[str, Any]:
    """Split a transport URL the way oslo.messaging's TransportURL.parse does."""
    parts = urlsplit(url)
    nodes = []
    for node in parts.netloc.split(","):
        creds, _at, hostport = node.rpartition("@")
        user, _colon, password = creds.partition(":")
        host, _colon, port = hostport.rpartition(":")
        nodes.append((unquote(user), unquote(password), host.strip("[]"), int(port)))
    return {"scheme": parts.scheme, "nodes": nodes, "vhost": unquote(parts.path[1:])}


@pytest.mark.parametrize(
    ("args", "kwargs", "expected"),
    [
        # One node, TLS port given (what the roles pass).
        (
            (["198.18.1.11"], "nova", "abc123"),
            {"vhost": "openstack", "port": 5671},
            "rabbit://nova:abc123@198.18.1.11:5671/openstack",
        ),
        # Every node, in order, each with the credentials (oslo.messaging fails over).
        (
            (TWO, "neutron", "pw"),
            {"vhost": "openstack", "port": "5671"},
            "rabbit://neutron:pw@198.18.1.11:5671,neutron:pw@198.18.2.11:5671/openstack",
        ),
        # No port: TLS picks 5671, plain 5672.
        ((TWO[:1], "u", "p"), {"vhost": "v", "tls": True}, "rabbit://u:p@198.18.1.11:5671/v"),
        ((TWO[:1], "u", "p"), {"vhost": "v", "tls": False}, "rabbit://u:p@198.18.1.11:5672/v"),
        # A boolean given as a string, as inventories sometimes have it.
        ((TWO[:1], "u", "p"), {"vhost": "v", "tls": "false"}, "rabbit://u:p@198.18.1.11:5672/v"),
        ((TWO[:1], "u", "p"), {"vhost": "v", "tls": "yes"}, "rabbit://u:p@198.18.1.11:5671/v"),
        # An explicit port wins over the TLS default.
        (
            (TWO[:1], "u", "p"),
            {"vhost": "v", "port": 15671, "tls": True},
            "rabbit://u:p@198.18.1.11:15671/v",
        ),
        # A single host as a string, RabbitMQ's default vhost "/" quoted.
        (("mq1", "u", "p"), {}, "rabbit://u:p@mq1:5672/%2F"),
        # IPv6 in brackets.
        ((["2001:db8::5"], "u", "p"), {"port": 5671}, "rabbit://u:p@[2001:db8::5]:5671/%2F"),
        # Everything that would end the user info or the authority is quoted, "/" too.
        (
            (["h"], "nova", "p@ss:w/rd%"),
            {"vhost": "openstack", "port": 5672},
            "rabbit://nova:p%40ss%3Aw%2Frd%25@h:5672/openstack",
        ),
    ],
)
def test_urls(args: tuple[Any, ...], kwargs: dict[str, Any], expected: str) -> None:
    assert transport_url(*args, **kwargs) == expected


@pytest.mark.parametrize("password", ["p@ss:w/rd", "%41,b@c", "a b#c?d&e=f+g", "ünï/cödé", ""])
def test_password_survives_oslo_messaging_parsing(password: str) -> None:
    got = parse(transport_url(TWO, "nova", password, vhost="open/stack", port=5671))
    assert got["scheme"] == "rabbit"
    assert got["vhost"] == "open/stack"
    assert got["nodes"] == [("nova", password, ip, 5671) for ip in TWO]


def _render(expr: str, **variables: Any) -> Any:
    templar = Templar(loader=DataLoader(), variables=variables)
    return templar.template(trust_as_template("{{ " + expr + " }}"))


def test_same_url_as_the_roles_built_before() -> None:
    # nova_controller's former expression; generated secrets are letters and digits, so the
    # rendered configs keep every byte but the user and password.
    old = (
        "'rabbit://' ~ (hosts | map('regex_replace', '^', user ~ ':' ~ (pw | urlencode) ~ '@')"
        " | map('regex_replace', '$', ':' ~ port) | join(',')) ~ '/' ~ vhost"
    )
    new = "hosts | vrstack.cloud.transport_url(user, pw, vhost=vhost, port=port, tls=true)"
    values = {
        "hosts": TWO,
        "user": "nova",
        "pw": "Zx9" * 10 + "q7",
        "port": 5671,
        "vhost": "openstack",
    }
    assert _render(new, **values) == _render(old, **values)
    assert _render(new, **values).startswith("rabbit://nova:Zx9")


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (([], "u", "p"), {}, "no messaging hosts"),
        ((None, "u", "p"), {}, "no messaging hosts"),
        ((["h", ""], "u", "p"), {}, "must be a name or address"),
        (([5], "u", "p"), {}, "must be a name or address"),
        ((["h"], "", "p"), {}, "user is empty"),
        ((["h"], "u", "p"), {"vhost": ""}, "virtual host is empty"),
        ((["h"], "u", "p"), {"port": "amqps"}, "port must be a number"),
        ((["h"], "u", "p"), {"port": 70000}, "is not a TCP port"),
        ((["h"], "u", "p"), {"port": 0}, "is not a TCP port"),
    ],
)
def test_bad_input_is_a_clear_error(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        transport_url(*args, **kwargs)


def test_a_bad_password_is_not_shown() -> None:
    with pytest.raises(AnsibleFilterError) as err:
        transport_url(["h"], "u", 123456789)  # type: ignore[arg-type]
    assert "123456789" not in str(err.value)
    assert "int" in str(err.value)


def test_registered_under_the_collection_name() -> None:
    assert FilterModule().filters() == {"transport_url": transport_url}
    url = _render(
        "['198.18.1.11'] | vrstack.cloud.transport_url('nova', 'pw', vhost='openstack', tls=true)"
    )
    assert url == "rabbit://nova:pw@198.18.1.11:5671/openstack"
    with pytest.raises(AnsibleError, match="no messaging hosts"):
        _render("[] | vrstack.cloud.transport_url('nova', 'pw')")
