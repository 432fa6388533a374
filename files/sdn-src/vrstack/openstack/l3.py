"""Neutron L3 service plugin `vrstack_l3`: routers and floating IPs -> the config API.

Neutron's own L3 DB mixin keeps the database, IPAM and quotas (router ports, gateway
ports, floating addresses); this plugin mirrors each change into the config API as a
`logical-router` (uuid = name = the router id) or a `floating-ip` (uuid = name = the
floating IP id), and undoes the Neutron change when the config API refuses, so the user
sees the error and nothing stays half-written. There is no L3 agent: the vrouter agent
on each compute is the gateway of every subnet and does the floating IPs' NAT, so
Neutron's router ports (`network:router_interface`, `network:router_gateway`,
`network:floatingip`) are never bound to a host.

    [DEFAULT]
    service_plugins = vrstack_l3
    (the [ml2_vrstack] settings of the ML2 driver give the config API's URL and token)
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar

from neutron.db import l3_db
from neutron.db.models import l3 as l3_models
from neutron.quota import resource_registry
from neutron_lib import constants as n_const
from neutron_lib.api.definitions import l3 as l3_apidef
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from neutron_lib.services import base as service_base
from oslo_config import cfg
from oslo_log import log as logging

from . import mapping, ml2
from .configapi import ApiError

LOG = logging.getLogger(__name__)
JSON = dict[str, Any]


class VrstackL3Plugin(service_base.ServicePluginBase, l3_db.L3_NAT_dbonly_mixin):  # type: ignore[misc]
    """Routers and floating IPs in Neutron's database, mirrored to the config API."""

    supported_extension_aliases: ClassVar[list[str]] = [l3_apidef.ALIAS]
    __native_pagination_support = True
    __native_sorting_support = True

    @resource_registry.tracked_resources(router=l3_models.Router, floatingip=l3_models.FloatingIP)
    def __init__(self) -> None:
        super().__init__()
        conf = cfg.CONF[ml2.GROUP]
        self.backend = ml2.Backend(ml2.config_client(conf))

    @classmethod
    def get_plugin_type(cls) -> str:
        return str(plugin_constants.L3)

    def get_plugin_description(self) -> str:
        return "vrstack routers and floating IPs (the vrouter agents route and NAT)"

    # ---- the config API side ---------------------------------------------------------

    def _push_router(self, context: Any, router_id: str) -> None:
        admin = context.elevated()
        core = directory.get_plugin()
        ports = core.get_ports(
            admin,
            filters={"device_id": [router_id], "device_owner": [mapping.ROUTER_INTERFACE_OWNER]},
        )
        ids = sorted({ip["subnet_id"] for p in ports for ip in p["fixed_ips"]})
        subnets = {s["id"]: s for s in core.get_subnets(admin, filters={"id": ids})} if ids else {}
        self.backend.put_router(self.get_router(admin, router_id), ports, subnets)

    @staticmethod
    def _mirrored(what: str, push: Callable[[], Any], undo: Callable[[], Any]) -> None:
        """Push a Neutron change to the config API; if it refuses, undo the change in
        Neutron and raise the error the user should see."""
        try:
            push()
        except ApiError as exc:
            undo()
            raise ml2.neutron_error(exc, what) from None

    # ---- routers -------------------------------------------------------------------------

    def create_router(self, context: Any, router: JSON) -> JSON:
        made: JSON = super().create_router(context, router)
        rid = made["id"]
        self._mirrored(
            f"router {rid}",
            lambda: self._push_router(context, rid),
            lambda: super(VrstackL3Plugin, self).delete_router(context, rid),
        )
        return made

    def update_router(self, context: Any, id: str, router: JSON) -> JSON:
        before = self.get_router(context, id)
        done: JSON = super().update_router(context, id, router)

        def undo() -> None:
            gateway = before.get("external_gateway_info") or {}
            if gateway != (done.get("external_gateway_info") or {}):
                back = {"network_id": gateway["network_id"]} if gateway else {}
                body = {"router": {"external_gateway_info": back}}
                super(VrstackL3Plugin, self).update_router(context, id, body)

        self._mirrored(f"router {id}", lambda: self._push_router(context, id), undo)
        return done

    def delete_router(self, context: Any, id: str) -> None:
        # The config API first: if it refuses, Neutron still has the router; if Neutron
        # then refuses (interfaces left), the router goes back into the config API.
        self._checked_delete("logical-router", id)
        try:
            super().delete_router(context, id)
        except Exception:
            self._push_router(context, id)
            raise

    def add_router_interface(
        self, context: Any, router_id: str, interface_info: JSON | None = None
    ) -> JSON:
        info: JSON = super().add_router_interface(context, router_id, interface_info)
        by = {"port_id": info["port_id"]}
        if "subnet_id" in (interface_info or {}):
            by = {"subnet_id": info["subnet_id"]}
        self._mirrored(
            f"router {router_id} interface",
            lambda: self._push_router(context, router_id),
            lambda: super(VrstackL3Plugin, self).remove_router_interface(context, router_id, by),
        )
        return info

    def remove_router_interface(self, context: Any, router_id: str, interface_info: JSON) -> JSON:
        info: JSON = super().remove_router_interface(context, router_id, interface_info)
        back = {"subnet_id": info["subnet_id"]}
        self._mirrored(
            f"router {router_id} interface",
            lambda: self._push_router(context, router_id),
            lambda: super(VrstackL3Plugin, self).add_router_interface(context, router_id, back),
        )
        return info

    # ---- floating IPs ----------------------------------------------------------------------

    def create_floatingip(
        self,
        context: Any,
        floatingip: JSON,
        initial_status: str = n_const.FLOATINGIP_STATUS_ACTIVE,
    ) -> JSON:
        fip: JSON = super().create_floatingip(context, floatingip, initial_status)
        self._mirrored(
            f"floating IP {fip['id']}",
            lambda: self.backend.put_floating_ip(fip),
            lambda: super(VrstackL3Plugin, self).delete_floatingip(context, fip["id"]),
        )
        return fip

    def update_floatingip(self, context: Any, id: str, floatingip: JSON) -> JSON:
        before = self.get_floatingip(context, id)
        fip: JSON = super().update_floatingip(context, id, floatingip)
        back = {"port_id": before["port_id"]}
        if before["port_id"]:
            back["fixed_ip_address"] = before["fixed_ip_address"]
        self._mirrored(
            f"floating IP {id}",
            lambda: self.backend.put_floating_ip(fip),
            lambda: super(VrstackL3Plugin, self).update_floatingip(
                context, id, {"floatingip": back}
            ),
        )
        return fip

    def delete_floatingip(self, context: Any, id: str) -> None:
        fip = self.get_floatingip(context, id)
        self._checked_delete("floating-ip", id)
        try:
            super().delete_floatingip(context, id)
        except Exception:
            self.backend.put_floating_ip(fip)
            raise

    def disassociate_floatingips(self, context: Any, port_id: str) -> Any:
        """The port is being deleted: its floating IPs let go of it here too (before
        the ML2 driver deletes the port's VMI, which they reference)."""
        fips = self.get_floatingips(context.elevated(), filters={"port_id": [port_id]})
        routers = super().disassociate_floatingips(context, port_id)
        for fip in fips:
            freed = {**fip, "port_id": None, "fixed_ip_address": None}
            ml2._checked(
                f"floating IP {fip['id']}", lambda f=freed: self.backend.put_floating_ip(f)
            )
        return routers

    def _checked_delete(self, rtype: str, uid: str) -> None:
        """Delete in the config API (already gone is fine); raise a Neutron error."""
        ml2._checked(f"{rtype} {uid}", lambda: self.backend.api.delete(rtype, uid))
