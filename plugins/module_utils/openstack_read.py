# Copyright: vrstack developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
"""openstack_info's reads of nova's services and hypervisors and placement's resource
providers over plain HTTP (issue 7): one token request to Keystone, whose answer carries
the catalog, then one GET per list, with the clouds.yaml settings openstacksdk would use
(its import alone took about 0.8 s a call)."""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from ansible_collections.vrstack.cloud.plugins.module_utils import api_client, keystone_api

# gather -> (service type, path below its endpoint, key of the list, field -> attribute),
# the fields openstacksdk's resources give under the same names.
READERS: dict[str, tuple[str, str, str, dict[str, str]]] = {
    "compute_services": (
        "compute",
        "/os-services",
        "services",
        {"binary": "binary", "host": "host", "state": "state", "status": "status"},
    ),
    "hypervisors": (
        "compute",
        "/os-hypervisors/detail",
        "hypervisors",
        {
            "name": "hypervisor_hostname",
            "state": "state",
            "status": "status",
            "type": "hypervisor_type",
        },
    ),
    "resource_providers": (
        "placement",
        "/resource_providers",
        "resource_providers",
        {"id": "uuid", "name": "name"},
    ),
}

# Where openstacksdk looks for clouds.yaml, in its order.
CLOUDS_YAML = (
    "clouds.yaml",
    os.path.expanduser("~/.config/openstack/clouds.yaml"),
    "/etc/openstack/clouds.yaml",
)

Send = Callable[..., tuple[int, dict[str, str], bytes]]


class ReadError(Exception):
    """A read failed; `where` names the API (keystone or the service's)."""

    def __init__(self, where: str, message: str) -> None:
        super().__init__(message)
        self.where = where


def clouds_yaml_path(given: str | None = None) -> str:
    for path in (given, os.environ.get("OS_CLIENT_CONFIG_FILE"), *CLOUDS_YAML):
        if path and os.path.isfile(path):
            return path
    raise ReadError("keystone", "no clouds.yaml found")


def endpoint(catalog: list[dict[str, Any]], kind: str, region: str, interface: str) -> str:
    for service in catalog:
        if service.get("type") != kind:
            continue
        for ep in service.get("endpoints", []):
            if ep.get("interface") == interface and region in (
                ep.get("region"),
                ep.get("region_id"),
            ):
                return str(ep["url"]).rstrip("/")
    raise ReadError(f"the {kind} API", f"no {interface} endpoint in region {region} in the catalog")


def read(
    text: str, cloud: str, region: str, gather: list[str], send: Send | None = None
) -> dict[str, list[dict[str, Any]]]:
    """The lists of `gather`, each entry with the fields of READERS."""
    send = send or api_client.request
    try:
        settings = keystone_api.cloud_settings(text, cloud)
        entry = keystone_api.parse_clouds(text)["clouds"][cloud]
    except keystone_api.KeystoneError as exc:
        raise ReadError("keystone", f"clouds.yaml: {exc}") from None
    interface = str(entry.get("interface") or "public")
    ca = settings["cacert"] or None
    body = keystone_api.settings_auth(settings)
    try:
        status, headers, raw = send(
            settings["url"] + "/auth/tokens", method="POST", body=body, ca_path=ca
        )
    except api_client.Unreachable as exc:
        raise ReadError("keystone", f"no answer: {exc}") from None
    if status != 201:
        raise ReadError(
            "keystone", f"login as {settings['username']}: {keystone_api.describe(status, raw)}"
        )
    token = {k.lower(): v for k, v in headers.items()}.get("x-subject-token", "")
    catalog = ((api_client.parsed(raw) or {}).get("token") or {}).get("catalog") or []
    result: dict[str, list[dict[str, Any]]] = {}
    for what in gather:
        kind, path, key, fields = READERS[what]
        where = f"the {kind} API"
        url = endpoint(catalog, kind, region, interface) + path
        try:
            status, _headers, raw = send(url, headers={"X-Auth-Token": token}, ca_path=ca)
        except api_client.Unreachable as exc:
            raise ReadError(where, f"GET {url}: no answer: {exc}") from None
        if status != 200:
            raise ReadError(where, f"GET {url}: {keystone_api.describe(status, raw)}")
        items = (api_client.parsed(raw) or {}).get(key)
        if not isinstance(items, list):
            raise ReadError(where, f"GET {url}: no list '{key}' in the answer")
        result[what] = [{k: item.get(attr) for k, attr in fields.items()} for item in items]
    return result
