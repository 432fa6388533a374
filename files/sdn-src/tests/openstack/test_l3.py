"""The `vrstack_l3` service plugin inside Neutron (Neutron's own ML2 and L3 test bases:
the API, ML2 with the `vrstack` driver, the L3 DB, IPAM, in-memory SQLite) writing to a
real `vrstack-api` process: routers and floating IPs land in the config API, a
refusal there reaches the user with nothing left behind in Neutron, and the ML2
driver's resync puts them back in line."""

from __future__ import annotations

from typing import Any

import neutronkit
from neutron.db import l3_db
from neutron.tests.unit.api import test_extensions
from neutron.tests.unit.extensions import test_l3
from neutron_lib import constants as n_const
from neutron_lib.api.definitions import portbindings
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from neutronkit import api_call, revision

from vrstack.config.testing import ADMIN_TOKEN
from vrstack.openstack import l3, mapping, ml2


class TestVrstackL3(test_l3.L3NatTestCaseMixin, neutronkit.VrstackMl2Case):
    l3_plugin = "vrstack_l3"  # by its entry point, as neutron.conf names it

    def setUp(self) -> None:
        super().setUp()
        # The L3 mixin's helpers post to the router API through ext_api.
        self.ext_api = test_extensions.setup_extensions_middleware(test_l3.L3TestExtensionManager())

    @property
    def l3(self) -> l3.VrstackL3Plugin:
        plugin: l3.VrstackL3Plugin = directory.get_plugin(plugin_constants.L3)
        return plugin

    def get(self, path: str) -> Any:
        return api_call(self.cfgapi, "GET", path)

    def network_with_subnet(self, cidr: str, external: bool = False) -> tuple[str, str]:
        net = self._make_network(self.fmt, f"net-{cidr[:-3]}", True, as_admin=True)["network"]
        sub = self._make_subnet(self.fmt, {"network": net}, cidr[:-4] + "1", cidr)["subnet"]
        if external:
            self._set_net_external(net["id"])
        return net["id"], sub["id"]

    def test_the_plugin_is_loaded_by_its_entry_point(self) -> None:
        assert isinstance(self.l3, l3.VrstackL3Plugin)

    def test_a_router_joins_its_subnets_and_keeps_its_gateway(self) -> None:
        a, sub_a = self.network_with_subnet("198.18.80.0/24")
        b, sub_b = self.network_with_subnet("198.18.81.0/24")
        ext, _ = self.network_with_subnet("198.18.90.0/24", external=True)
        router = self._make_router(self.fmt, self._project_id)["router"]
        rid = router["id"]
        lr = self.get(f"/logical-routers/{rid}")
        assert lr["fq_name"] == [mapping.project_uuid(self._project_id), rid]
        assert lr["interfaces"] == [] and "external_gateway" not in lr

        got_a = self._router_interface_action("add", rid, sub_a, None)
        self._router_interface_action("add", rid, sub_b, None)
        lr = self.get(f"/logical-routers/{rid}")
        assert {i["subnet_cidr"]: i["virtual_network"] for i in lr["interfaces"]} == {
            "198.18.80.0/24": a,
            "198.18.81.0/24": b,
        }
        # The interface port is Neutron's own: gateway address, never bound, not a VMI.
        port = self._show("ports", got_a["port_id"], as_admin=True)["port"]
        assert port["device_owner"] == n_const.DEVICE_OWNER_ROUTER_INTF
        assert port["fixed_ips"][0]["ip_address"] == "198.18.80.1"
        assert port[portbindings.VIF_TYPE] == portbindings.VIF_TYPE_UNBOUND
        assert self.get(f"/virtual-machine-interfaces/{port['id']}") is None

        self._add_external_gateway_to_router(rid, ext)
        assert self.get(f"/logical-routers/{rid}")["external_gateway"] == ext
        self._remove_external_gateway_from_router(rid, ext)
        assert "external_gateway" not in self.get(f"/logical-routers/{rid}")

        self._router_interface_action("remove", rid, sub_b, None)
        lr = self.get(f"/logical-routers/{rid}")
        assert [i["virtual_network"] for i in lr["interfaces"]] == [a]
        self._router_interface_action("remove", rid, sub_a, None)
        self._delete("routers", rid)
        assert self.get(f"/logical-routers/{rid}") is None

    def test_a_floating_ip_follows_its_port(self) -> None:
        ext, _ = self.network_with_subnet("198.18.91.0/24", external=True)
        net, sub = self.network_with_subnet("198.18.82.0/24")
        router = self._make_router(
            self.fmt, self._project_id, external_gateway_info={"network_id": ext}
        )["router"]
        self._router_interface_action("add", router["id"], sub, None)
        port = self._make_port(self.fmt, net, fixed_ips=[{"subnet_id": sub}])["port"]
        fixed = port["fixed_ips"][0]["ip_address"]

        fip = self._make_floatingip(self.fmt, ext, port_id=port["id"])["floatingip"]
        have = self.get(f"/floating-ips/{fip['id']}")
        assert have["floating_ip_address"] == fip["floating_ip_address"]
        assert have["floating_network"] == ext
        assert (have["virtual_machine_interface"], have["fixed_ip_address"]) == (port["id"], fixed)

        self._update("floatingips", fip["id"], {"floatingip": {"port_id": None}})
        have = self.get(f"/floating-ips/{fip['id']}")
        assert "virtual_machine_interface" not in have and "fixed_ip_address" not in have
        self._update("floatingips", fip["id"], {"floatingip": {"port_id": port["id"]}})
        assert self.get(f"/floating-ips/{fip['id']}")["virtual_machine_interface"] == port["id"]

        # Deleting the port lets go of its floating IP first, so its VMI can go too.
        self._delete("ports", port["id"])
        assert "virtual_machine_interface" not in self.get(f"/floating-ips/{fip['id']}")
        assert self.get(f"/virtual-machine-interfaces/{port['id']}") is None
        self._delete("floatingips", fip["id"])
        assert self.get(f"/floating-ips/{fip['id']}") is None

    def test_a_refusal_reaches_the_user_and_neutron_keeps_nothing(self) -> None:
        ext, _ = self.network_with_subnet("198.18.92.0/24", external=True)
        # The config API already holds 198.18.92.50 (another writer's address).
        api_call(
            self.cfgapi,
            "POST",
            "/instance-ips",
            {"name": "held", "virtual_network": ext, "ip_address": "198.18.92.50"},
        )
        before = revision(self.cfgapi)
        res = self._create_floatingip(self.fmt, ext, floating_ip="198.18.92.50", as_admin=True)
        assert res.status_int == 409, res.body
        assert b"198.18.92.50 is in use" in res.body
        assert self._list("floatingips")["floatingips"] == []
        assert revision(self.cfgapi) == before

        self.l3.backend.api.token = "wrong-token"
        try:
            res = self._create_router(self.fmt, self._project_id)
            assert res.status_int == 503, res.body
            assert b"vrstack config API failed on router" in res.body
        finally:
            self.l3.backend.api.token = ADMIN_TOKEN
        assert self._list("routers")["routers"] == []

    def test_resync_restores_a_lost_router_and_removes_a_stale_one(self) -> None:
        a, sub_a = self.network_with_subnet("198.18.83.0/24")
        b, sub_b = self.network_with_subnet("198.18.84.0/24")
        ext, _ = self.network_with_subnet("198.18.93.0/24", external=True)
        router = self._make_router(
            self.fmt, self._project_id, external_gateway_info={"network_id": ext}
        )["router"]
        rid = router["id"]
        self._router_interface_action("add", rid, sub_a, None)
        self._router_interface_action("add", rid, sub_b, None)
        port = self._make_port(self.fmt, a, fixed_ips=[{"subnet_id": sub_a}])["port"]
        fip = self._make_floatingip(self.fmt, ext, port_id=port["id"])["floatingip"]
        mech = self.mech
        mech.resync(self.context)  # finds the L3 plugin; earlier tests' leftovers go
        synced: dict[str, Any] = {}
        written = self.get(f"/logical-routers/{rid}")

        # Drift: the router vanished from the config API behind Neutron's back, and the
        # config API holds a router in Neutron's project that Neutron never had.
        api_call(self.cfgapi, "DELETE", f"/logical-routers/{rid}")
        stale = api_call(
            self.cfgapi,
            "POST",
            "/logical-routers",
            {"name": "stale", "parent_uuid": mapping.project_uuid(self._project_id)},
        )
        counts = ml2.resync(mech.backend, self.driver, self.context, synced, self.l3)
        assert counts["created"] == 1 and counts["deleted"] == 1, counts
        back = self.get(f"/logical-routers/{rid}")
        assert back is not None, "the lost router did not come back"
        assert back["interfaces"] == written["interfaces"] and len(back["interfaces"]) == 2
        assert {i["virtual_network"] for i in back["interfaces"]} == {a, b}
        assert back["external_gateway"] == ext
        assert self.get(f"/logical-routers/{stale['uuid']}") is None
        assert self.get(f"/floating-ips/{fip['id']}")["virtual_machine_interface"] == port["id"]

        # In sync: every object skipped on its revision, nothing written.
        before = revision(self.cfgapi)
        again = ml2.resync(mech.backend, self.driver, self.context, synced, self.l3)
        assert again["created"] == again["updated"] == again["deleted"] == 0, again
        assert again["skipped"] >= 6, again  # 3 networks, a port, the router, the FIP
        assert revision(self.cfgapi) == before, "an in-sync resync must write nothing"

        # A floating IP let go of its port in Neutron alone (the DB mixin, not the plugin):
        # the resync lets go of it in the config API too.
        unplugged = {"floatingip": {"port_id": None}}
        l3_db.L3_NAT_dbonly_mixin.update_floatingip(self.l3, self.context, fip["id"], unplugged)
        assert self.get(f"/floating-ips/{fip['id']}")["virtual_machine_interface"] == port["id"]
        counts = ml2.resync(mech.backend, self.driver, self.context, synced, self.l3)
        assert counts["updated"] == 1 and counts["created"] == counts["deleted"] == 0, counts
        assert "virtual_machine_interface" not in self.get(f"/floating-ips/{fip['id']}")
