"""What the tests of the Neutron side share: Neutron's ML2 test base (its API, ML2, IPAM
and an in-memory SQLite database) with the `vrstack` mechanism driver pointed at the
module's `vrstack-api` process (conftest's `config_api`), and plain calls to that API.

A base class rather than a fixture: the driver's settings must be set in Neutron's
`preSetUp` hook, inside the test case's own setUp, which a pytest fixture cannot reach."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, ClassVar

import pytest
from neutron.tests.unit.plugins.ml2 import test_plugin
from oslo_config import cfg

from vrstack.config.testing import ADMIN_TOKEN, Daemon
from vrstack.openstack import ml2


def api_call(api: Daemon, method: str, path: str, body: Any = None) -> Any:
    """One request to the config API as admin; None for a 404."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(api.url + path, data=data, method=method)
    req.add_header("X-Auth-Token", ADMIN_TOKEN)
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            raw = resp.read()
            return json.loads(raw) if raw else None
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def revision(api: Daemon) -> int:
    """The config API's revision: unchanged when nothing was written."""
    return int(api_call(api, "GET", "/projects?limit=1")["revision"])


class VrstackMl2Case(test_plugin.Ml2PluginV2TestCase):
    """Neutron's ML2 plugin with only the `vrstack` driver, writing to `self.cfgapi`."""

    _mechanism_drivers: ClassVar[list[str]] = ["vrstack"]
    cfgapi: Daemon

    @pytest.fixture(autouse=True)
    def _api(self, config_api: Daemon) -> None:
        self.cfgapi = config_api

    def get_additional_service_plugins(self) -> dict[str, str]:
        # revision_number (what the resync skips on) comes from this plugin, loaded by
        # default outside of tests.
        return {"revisions": "revisions"}

    def preSetUp(self) -> None:
        cfg.CONF.set_override("api_url", self.cfgapi.url, ml2.GROUP)
        cfg.CONF.set_override("api_token", ADMIN_TOKEN, ml2.GROUP)
        cfg.CONF.set_override("timeout", 5.0, ml2.GROUP)
        cfg.CONF.set_override("resync_interval", 0, ml2.GROUP)  # the tests call resync
        cfg.CONF.set_override("watch_timeout", 1.0, ml2.GROUP)

    @property
    def mech(self) -> ml2.VrstackMechanismDriver:
        driver: ml2.VrstackMechanismDriver = self.driver.mechanism_manager.mech_drivers[
            "vrstack"
        ].obj
        return driver
