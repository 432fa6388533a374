# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""The firewall role's decisions before it loads rules: would the new rules lock Ansible
out, and do the rules in force still match what was last loaded. Kept here so the role
has one place for each and the unit tests can try them without a host."""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable, Mapping
from typing import Any

from ansible.errors import AnsibleFilterError

# Section markers of the read command's output (vars/main.yml, __firewall_read_cmd).
LIVE = "--- vrstack firewall: in force"
LOADED = "--- vrstack firewall: loaded"
# Keys of nft's JSON that change while the same rules stay loaded.
_VOLATILE = {"handle", "packets", "bytes"}
# nft names a protocol number only when /etc/protocols has it, and a package installed after
# the rules were loaded (netbase, pulled in on computes) adds that file: the same rule then
# lists `gre` where it listed 47. Compared as numbers (those the rules can use).
_PROTOCOL_NUMBERS = {
    "icmp": 1,
    "igmp": 2,
    "tcp": 6,
    "udp": 17,
    "gre": 47,
    "esp": 50,
    "ah": 51,
    "ipv6-icmp": 58,
    "vrrp": 112,
    "sctp": 132,
}


def _protocol_number(value: Any) -> Any:
    if isinstance(value, str):
        return _PROTOCOL_NUMBERS.get(value, value)
    if isinstance(value, dict) and list(value) == ["set"] and isinstance(value["set"], list):
        return {"set": [_protocol_number(v) for v in value["set"]]}
    return value


def _is_protocol_key(left: Any) -> bool:
    if not isinstance(left, dict):
        return False
    if left.get("meta", {}).get("key") == "l4proto":
        return True
    payload = left.get("payload", {})
    return (payload.get("protocol"), payload.get("field")) in {
        ("ip", "protocol"),
        ("ip6", "nexthdr"),
    }


def _strip_volatile(value: Any) -> Any:
    if isinstance(value, dict):
        out = {k: _strip_volatile(v) for k, v in value.items() if k not in _VOLATILE}
        if set(out) >= {"left", "right"} and _is_protocol_key(out["left"]):
            out["right"] = _protocol_number(out["right"])
        return out
    if isinstance(value, list):
        return [_strip_volatile(v) for v in value]
    return value


def _canonical(listing: str) -> Any:
    """What must stay equal while the same rules are in force ('' when nothing is)."""
    text = listing.strip()
    if not text:
        return ""
    if text.startswith("{"):
        try:
            objects = json.loads(text)["nftables"]
        except (ValueError, KeyError, TypeError):
            return text
        # metainfo holds nft's version: an upgrade alone is no drift of the rules.
        return [_strip_volatile(o) for o in objects if "metainfo" not in o]
    return [line.strip() for line in text.splitlines() if line.strip()]


def firewall_state(output: str) -> dict[str, Any]:
    """{ssh, deployed, drift} from the read command's output."""
    if not isinstance(output, str):
        raise AnsibleFilterError(f"firewall_state: expected the command's output, not {output!r}")
    head, sep, rest = output.partition(LIVE)
    live, sep2, loaded = rest.partition(LOADED)
    if not sep or not sep2:
        # No answer (check-mode stand-ins, a host that ran nothing): nothing to act on.
        return {"ssh": "", "deployed": False, "drift": False}
    ssh = ""
    deployed = False
    for line in head.splitlines():
        key, _sp, value = line.partition(" ")
        if key == "ssh":
            ssh = value.strip()
        elif key == "deployed":
            deployed = True
    now = _canonical(live)
    drift = deployed and (now == "" or not loaded.strip() or now != _canonical(loaded))
    return {"ssh": ssh, "deployed": deployed, "drift": drift}


def _address(text: str) -> str:
    """An address as the rules compare it: no zone, IPv4-mapped IPv6 as IPv4."""
    try:
        addr = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return ""
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
        return str(addr.ipv4_mapped)
    return str(addr)


def _source_towards(host: str) -> str:
    """This machine's source address for `host` (routing only: a UDP connect sends nothing)."""
    try:
        infos = socket.getaddrinfo(host, 22, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError):
        return ""
    for family, kind, proto, _name, sockaddr in infos:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.connect(sockaddr)
                return _address(str(sock.getsockname()[0]))
        except OSError:
            continue
    return ""


def firewall_client_address(ssh_connection: str, host: str = "") -> str:
    """The deploy host's address as the node sees it: SSH_CONNECTION's first field; when
    the node did not tell (become through sudo resets the environment), this machine's
    source address towards `host` (ansible_host resolved); '' when neither is known."""
    found = _address(ssh_connection.split()[0]) if (ssh_connection or "").strip() else ""
    if found or not host:
        return found
    return _source_towards(str(host))


def _covers(ports: Iterable[Any], port: int) -> bool:
    for spec in ports:
        first, _dash, last = str(spec).partition("-")
        try:
            if int(first) <= port <= int(last or first):
                return True
        except ValueError:
            continue
    return False


def _in(address: ipaddress.IPv4Address | ipaddress.IPv6Address, sources: Any) -> bool:
    if sources == "any":
        return True
    for src in sources or []:
        try:
            net = ipaddress.ip_network(str(src), strict=False)
        except ValueError:
            continue
        if net.version == address.version and address in net:
            return True
    return False


def firewall_allows(
    rules: Iterable[Mapping[str, Any]], address: str, port: int | str = 22, proto: str = "tcp"
) -> bool:
    """Whether one of the rules (the role's __firewall_rules: name, proto, ports, v4, v6,
    each 'any' or addresses/CIDRs) accepts `proto` to `port` from `address`."""
    try:
        addr = ipaddress.ip_address(_address(str(address)) or str(address))
        number = int(port)
    except ValueError:
        raise AnsibleFilterError(
            f"firewall_allows: {address!r} is not an address or {port!r} not a port"
        ) from None
    for rule in rules:
        if rule.get("proto") != proto or not _covers(rule.get("ports") or [], number):
            continue
        if _in(addr, rule.get("v4" if addr.version == 4 else "v6")):
            return True
    return False


class FilterModule:
    def filters(self) -> dict[str, Any]:
        return {
            "firewall_state": firewall_state,
            "firewall_client_address": firewall_client_address,
            "firewall_allows": firewall_allows,
        }
