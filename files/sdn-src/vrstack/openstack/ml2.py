"""ML2 mechanism driver `vrstack`: Neutron networks, subnets and ports -> the config API.

Neutron keeps its own database, IPAM, quotas and extensions; this driver mirrors the
result into the config API. Precommit refuses what the config model cannot hold;
postcommit writes and raises on failure, so ML2 deletes what it just created and the
user sees the config API's message (400/409 keep their status). `bind_port` binds on
hosts that have a `virtual-router` of the same name with `vif_type='vrouter'`, and the
port stays DOWN behind a provisioning block until that host's agent reports it `up`
(a `port-state` object): then `provisioning_complete` makes it ACTIVE and Neutron sends
Nova `network-vif-plugged`. `resync()` brings the config API back in line with Neutron,
skipping what it already wrote at the same `revision_number`.

Security groups and their rules do not pass through mechanism drivers: the driver
subscribes to Neutron's callbacks. PRECOMMIT refuses what the agent cannot enforce
(Neutron answers 409 with our reason and writes nothing); AFTER_CREATE/UPDATE/DELETE
write the whole group (its rules re-read from Neutron) or delete it. Those writes come
after Neutron's commit, so a failure is logged and the next resync repairs it; a port
write first makes sure its groups are in the config API.

Both loops (the port-state watch and the periodic resync) run once per deployment, in
the worker `get_workers()` returns, which Neutron starts in `neutron-periodic-workers`.

    [ml2]
    mechanism_drivers = vrstack
    [ml2_vrstack]
    api_url = https://198.18.1.11:8082
    api_ca_file = /etc/vrstack/pki/ca.crt
    api_token = ...
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from functools import partial
from typing import Any

from neutron.db import provisioning_blocks
from neutron.db.models import port_forwarding as _port_forwarding_model  # noqa: F401
from neutron_lib import constants as n_const
from neutron_lib import context as n_context
from neutron_lib import exceptions as n_exc
from neutron_lib import worker
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import events, registry, resources
from neutron_lib.plugins import constants as plugin_constants
from neutron_lib.plugins import directory
from neutron_lib.plugins.ml2 import api
from oslo_config import cfg
from oslo_log import log as logging
from sqlalchemy import orm

from . import mapping
from .configapi import ApiError, SyncConfigClient
from .portstate import PortStateWatcher

LOG = logging.getLogger(__name__)
JSON = dict[str, Any]
GROUP = "ml2_vrstack"
VIF_TYPE = "vrouter"
OPTS = [
    cfg.StrOpt("api_url", default="http://127.0.0.1:8082", help="The vrstack config API"),
    cfg.StrOpt(
        "api_ca_file",
        default="",
        help="The CA that signed an https api_url's certificate; empty: the system CAs",
    ),
    cfg.StrOpt("api_token", default="", secret=True, help="A read-write token"),
    cfg.FloatOpt("timeout", default=10.0, min=0.1, help="Seconds per config API request"),
    cfg.IntOpt(
        "resync_interval",
        default=300,
        min=0,
        help="Seconds between full resyncs from Neutron's database; 0: never",
    ),
    cfg.FloatOpt(
        "watch_timeout",
        default=25.0,
        min=1.0,
        max=300.0,
        help="Seconds each long poll for port states waits for a change",
    ),
]
cfg.CONF.register_opts(OPTS, GROUP)


def config_client(conf: Any) -> SyncConfigClient:
    """A config API client from the `[ml2_vrstack]` options."""
    return SyncConfigClient(conf.api_url, conf.api_token, conf.timeout, conf.api_ca_file)


class ConfigApiRejected(n_exc.BadRequest):  # type: ignore[misc]
    message = "vrstack config API refused %(what)s: %(reason)s"


class ConfigApiConflict(n_exc.Conflict):  # type: ignore[misc]
    message = "vrstack config API refused %(what)s: %(reason)s"


class ConfigApiUnavailable(n_exc.ServiceUnavailable):  # type: ignore[misc]
    message = "vrstack config API failed on %(what)s: %(reason)s"


def neutron_error(exc: ApiError, what: str) -> n_exc.NeutronException:
    """The Neutron exception a user should see for a config API error."""
    reason = exc.error + (f" (field {exc.field})" if exc.field else "")
    if exc.status in (400, 404):
        return ConfigApiRejected(what=what, reason=reason)
    if exc.status in (409, 412):
        return ConfigApiConflict(what=what, reason=reason)
    return ConfigApiUnavailable(what=what, reason=f"HTTP {exc.status}: {reason}")


def _checked(what: str, call: Callable[[], Any]) -> Any:
    try:
        return call()
    except ApiError as exc:
        LOG.error("vrstack: %s failed: %s", what, exc)
        raise neutron_error(exc, what) from None
    except mapping.Unsupported as exc:
        raise n_exc.InvalidInput(error_message=f"vrstack: {exc}") from None


class Backend:
    """The config API writes, shared by the driver's hooks and the resync.
    `group_source(id)` reads a security group from Neutron, for a port's groups that the
    config API does not have yet."""

    def __init__(
        self, client: SyncConfigClient, group_source: Callable[[str], JSON] | None = None
    ) -> None:
        self.api = client
        self.group_source = group_source
        self._projects: set[str] = set()

    def ensure_project(self, project_id: str) -> str:
        uid = mapping.project_uuid(project_id)
        if uid in self._projects:
            return uid
        if self.api.get("project", uid) is None:
            try:
                self.api.create("project", mapping.project_body(project_id))
            except ApiError as exc:
                if exc.status != 409:  # another worker made it meanwhile
                    raise
        self._projects.add(uid)
        return uid

    def virtual_router(self, host: str) -> str | None:
        if not host:
            return None
        found = self.api.list_all("virtual-router", name=host)
        return str(found[0]["uuid"]) if found else None

    def put(self, rtype: str, body: JSON) -> str:
        """Create or update to `body`; returns "created", "updated" or "unchanged"."""
        for _ in range(5):  # a concurrent writer moves the version: read again
            have = self.api.get(rtype, body["uuid"])
            if have is None:
                self.api.create(rtype, body)
                return "created"
            if not mapping.differs(body, have):
                return "unchanged"
            fields = {k: v for k, v in body.items() if k not in ("uuid", "parent_uuid")}
            fields["name"] = have["name"]
            try:
                self.api.update(rtype, body["uuid"], fields, version=have["version"])
                return "updated"
            except ApiError as exc:
                if exc.status != 412:
                    raise
        raise ApiError(412, {"error": "changed by others 5 times in a row"}, "PUT", rtype)

    def put_network(self, network: JSON, subnets: list[JSON]) -> str:
        self.ensure_project(network["project_id"])
        return self.put("virtual-network", mapping.network_body(network, subnets))

    def put_port(self, port: JSON) -> str:
        self.ensure_project(port["project_id"])
        host = port.get(portbindings.HOST_ID) or ""
        vr = self.virtual_router(host) if port.get(portbindings.VIF_TYPE) == VIF_TYPE else None
        body = mapping.port_body(port, vr)
        for group in body["security_groups"]:
            self.ensure_group(group, port["project_id"])
        return self.put("virtual-machine-interface", body)

    def put_security_group(self, group: JSON) -> str:
        self.ensure_project(group["project_id"])
        return self.put("security-group", mapping.security_group_body(group))

    def put_router(self, router: JSON, ports: list[JSON], subnets: dict[str, JSON]) -> str:
        """The router's `logical-router`; its interfaces are its ports among `ports`."""
        self.ensure_project(router["project_id"])
        return self.put("logical-router", mapping.router_body(router, ports, subnets))

    def put_floating_ip(self, fip: JSON) -> str:
        self.ensure_project(fip["project_id"])
        return self.put("floating-ip", mapping.floating_ip_body(fip))

    def ensure_group(self, group_id: str, project_id: str) -> None:
        """Write a group a port names when the config API does not have it yet."""
        if self.api.get("security-group", group_id) is not None:
            return
        if group_id == mapping.no_rule_uuid(project_id):
            self.put("security-group", mapping.no_rule_body(project_id))
        elif self.group_source is not None:
            self.put_security_group(self.group_source(group_id))


def configure_port_relationships() -> None:
    """Give Port the relationships Neutron's get_ports names before any query.

    get_ports reads `Port.port_forwardings`, a backref that exists only once the port
    forwarding model is imported (above) and SQLAlchemy has configured the mappers, which
    it otherwise does at a worker's first query. Without a port forwarding service plugin,
    a worker whose first request was a port list answered 500 (AttributeError) until then.
    """
    orm.configure_mappers()


class VrstackMechanismDriver(api.MechanismDriver):  # type: ignore[misc]
    def initialize(self) -> None:
        configure_port_relationships()
        conf = cfg.CONF[GROUP]
        self.backend = Backend(config_client(conf), self._neutron_group)
        self.synced: dict[str, Any] = {}  # neutron id -> what resync last wrote it from
        sg, rule = resources.SECURITY_GROUP, resources.SECURITY_GROUP_RULE
        for callback, resource, event in (
            (self._group_precommit, sg, events.PRECOMMIT_CREATE),
            (self._group_precommit, sg, events.PRECOMMIT_UPDATE),
            (self._group_written, sg, events.AFTER_CREATE),
            (self._group_written, sg, events.AFTER_UPDATE),
            (self._group_deleted, sg, events.AFTER_DELETE),
            (self._rule_precommit, rule, events.PRECOMMIT_CREATE),
            (self._rule_written, rule, events.AFTER_CREATE),
            (self._rule_written, rule, events.AFTER_DELETE),
        ):
            registry.subscribe(callback, resource, event)

    def get_workers(self) -> list[worker.BaseWorker]:
        return [VrstackWorker(self)]

    # ---- networks ---------------------------------------------------------------------

    def create_network_postcommit(self, context: Any) -> None:
        net = context.current
        _checked(f"network {net['id']}", lambda: self.backend.put_network(net, []))

    def update_network_postcommit(self, context: Any) -> None:
        net = context.current
        subnets = self._subnets_of(context.plugin_context, net["id"])
        _checked(f"network {net['id']}", lambda: self.backend.put_network(net, subnets))

    def delete_network_postcommit(self, context: Any) -> None:
        # ML2 cannot undo a delete: log, and let the resync retry.
        try:
            self.backend.api.delete("virtual-network", context.current["id"])
        except ApiError as exc:
            LOG.error("vrstack: network %s not deleted: %s", context.current["id"], exc)

    # ---- subnets (held inside the virtual-network) -----------------------------------

    def create_subnet_precommit(self, context: Any) -> None:
        _checked(f"subnet {context.current['id']}", lambda: mapping.check_subnet(context.current))

    def update_subnet_precommit(self, context: Any) -> None:
        self.create_subnet_precommit(context)

    def create_subnet_postcommit(self, context: Any) -> None:
        self._put_network_of(context, context.current)

    def update_subnet_postcommit(self, context: Any) -> None:
        self._put_network_of(context, context.current)

    def delete_subnet_postcommit(self, context: Any) -> None:
        try:
            self._put_network_of(context, context.current)
        except n_exc.NeutronException as exc:
            LOG.error("vrstack: subnet %s not removed: %s", context.current["id"], exc)

    def _subnets_of(self, plugin_context: Any, network_id: str) -> list[JSON]:
        plugin = directory.get_plugin()
        subnets: list[JSON] = plugin.get_subnets(
            plugin_context, filters={"network_id": [network_id]}
        )
        return subnets

    def _put_network_of(self, context: Any, subnet: JSON) -> None:
        net = context.network.current
        subnets = self._subnets_of(context.plugin_context, net["id"])
        _checked(f"subnet {subnet['id']}", lambda: self.backend.put_network(net, subnets))

    # ---- ports ------------------------------------------------------------------------

    def create_port_precommit(self, context: Any) -> None:
        port = context.current
        if len(port.get("fixed_ips") or []) > 16:
            raise n_exc.InvalidInput(error_message="vrstack: a port holds at most 16 fixed IPs")

    def update_port_precommit(self, context: Any) -> None:
        self.create_port_precommit(context)
        self._block_until_up(context)

    def _block_until_up(self, context: Any) -> None:
        """A port newly bound here (or moved to another host) stays DOWN until the
        agent there reports it up. ML2 commits a binding through update_port_precommit."""
        port, orig = context.current, context.original or {}
        if (
            port.get(portbindings.VIF_TYPE) != VIF_TYPE
            or port.get("status") == n_const.PORT_STATUS_ACTIVE
            or mapping.is_service_port(port)
        ):
            return
        if orig.get(portbindings.VIF_TYPE) == VIF_TYPE and context.original_host == context.host:
            return
        provisioning_blocks.add_provisioning_component(
            context.plugin_context, port["id"], resources.PORT, provisioning_blocks.L2_AGENT_ENTITY
        )

    def create_port_postcommit(self, context: Any) -> None:
        port = context.current
        if not mapping.is_service_port(port):
            _checked(f"port {port['id']}", lambda: self.backend.put_port(port))

    def update_port_postcommit(self, context: Any) -> None:
        self.create_port_postcommit(context)

    def delete_port_postcommit(self, context: Any) -> None:
        port = context.current
        if mapping.is_service_port(port):
            return
        try:
            self.backend.api.delete("virtual-machine-interface", port["id"])
            # The agent deletes its report at unplug; a compute that is gone cannot.
            self.backend.api.delete("port-state", port["id"])
        except ApiError as exc:
            LOG.error("vrstack: port %s not deleted: %s", port["id"], exc)

    def bind_port(self, context: Any) -> None:
        host = context.host
        try:
            vr = self.backend.virtual_router(host)
        except ApiError as exc:
            LOG.error("vrstack: cannot bind port %s: %s", context.current["id"], exc)
            return
        if vr is None:
            LOG.info("vrstack: host %s has no virtual-router; not binding", host)
            return
        for segment in context.segments_to_bind:
            # No status: the port stays DOWN until the agent reports it up.
            context.set_binding(segment[api.ID], VIF_TYPE, {portbindings.CAP_PORT_FILTER: False})
            return

    # ---- security groups (Neutron callbacks) ---------------------------------------

    @staticmethod
    def _neutron_group(group_id: str) -> JSON:
        ctx = n_context.get_admin_context()
        group: JSON = directory.get_plugin().get_security_group(ctx, group_id)
        return group

    def _group_precommit(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        group = payload.desired_state or payload.latest_state
        try:
            mapping.check_security_group(group)
        except mapping.Unsupported as exc:
            raise n_exc.InvalidInput(error_message=f"vrstack: {exc}") from None

    def _rule_precommit(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        try:
            mapping.check_sg_rule(payload.latest_state)
        except mapping.Unsupported as exc:
            raise n_exc.InvalidInput(error_message=f"vrstack: {exc}") from None

    def _write_group(self, group_id: str) -> None:
        try:
            group = self._neutron_group(group_id)
        except n_exc.NotFound:
            return  # gone meanwhile: its delete takes it out of the config API
        try:
            self.backend.put_security_group(group)
        except (ApiError, mapping.Unsupported) as exc:
            # After Neutron's commit: nothing to undo; the resync writes it later.
            LOG.error("vrstack: security group %s not written: %s", group_id, exc)

    def _group_written(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        self._write_group(payload.resource_id)

    def _rule_written(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        if event == events.AFTER_DELETE:
            group_id = payload.metadata["security_group_id"]
        else:
            group_id = payload.latest_state["security_group_id"]
        self._write_group(group_id)

    def _group_deleted(self, resource: str, event: str, trigger: Any, payload: Any) -> None:
        try:
            self.backend.api.delete("security-group", payload.resource_id)
        except ApiError as exc:
            LOG.error("vrstack: security group %s not deleted: %s", payload.resource_id, exc)

    # ---- port states (the agents' reports) -------------------------------------------

    def port_state(self, state: JSON) -> None:
        """An agent's report: `up` completes the provisioning block of a port bound to
        that agent's host (Neutron then makes it ACTIVE and tells Nova); `down` makes an
        ACTIVE port DOWN. Reports from another host than the binding's are ignored."""
        ctx = n_context.get_admin_context()
        plugin = directory.get_plugin()
        port_id = state["uuid"]
        try:
            port = plugin.get_port(ctx, port_id)
        except n_exc.PortNotFound:
            return
        host = port.get(portbindings.HOST_ID) or ""
        if host != state.get("virtual_router") or port.get(portbindings.VIF_TYPE) != VIF_TYPE:
            return
        if state["status"] == "up":
            blocked = provisioning_blocks.is_object_blocked(ctx, port_id, resources.PORT)
            if port["status"] == n_const.PORT_STATUS_ACTIVE and not blocked:
                return
            LOG.info("vrstack: port %s is up on %s", port_id, host)
            provisioning_blocks.provisioning_complete(
                ctx, port_id, resources.PORT, provisioning_blocks.L2_AGENT_ENTITY
            )
        elif port["status"] == n_const.PORT_STATUS_ACTIVE:
            LOG.info("vrstack: port %s is down on %s: %s", port_id, host, state.get("detail"))
            plugin.update_port_status(ctx, port_id, n_const.PORT_STATUS_DOWN, host)

    def watch_port_states(self, stop: threading.Event) -> None:
        conf = cfg.CONF[GROUP]
        PortStateWatcher(config_client(conf), self.port_state, conf.watch_timeout).run(stop)

    # ---- resync -----------------------------------------------------------------------

    def resync(self, plugin_context: Any | None = None) -> dict[str, int]:
        """Make the config API match Neutron; returns counts by outcome."""
        ctx = plugin_context or n_context.get_admin_context()
        plugin = directory.get_plugin()
        l3 = directory.get_plugin(plugin_constants.L3)
        return resync(self.backend, plugin, ctx, self.synced, l3)

    def resync_loop(self, stop: threading.Event) -> None:
        interval = cfg.CONF[GROUP].resync_interval
        if not interval:
            return
        while not stop.wait(interval):
            try:
                counts = self.resync()
                LOG.info("vrstack: resync done: %s", counts)
            except Exception:  # a periodic task must survive to try again
                LOG.exception("vrstack: resync failed; trying again in %s s", interval)


class VrstackWorker(worker.BaseWorker):  # type: ignore[misc]
    """The driver's background loops, once per deployment: Neutron starts the workers
    of `get_workers()` in `neutron-periodic-workers` (not in the API or RPC workers)."""

    desc = "vrstack port states and resync"

    def __init__(self, driver: VrstackMechanismDriver) -> None:
        super().__init__(worker_process_count=0, desc=self.desc)
        self.driver = driver
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self, **kwargs: Any) -> None:
        super().start(desc=self.desc)
        self._stop.clear()
        for name, loop in (
            ("vrstack-port-states", self.driver.watch_port_states),
            ("vrstack-resync", self.driver.resync_loop),
        ):
            t = threading.Thread(target=loop, args=(self._stop,), name=name, daemon=True)
            t.start()
            self._threads.append(t)

    def stop(self) -> None:
        self._stop.set()

    def wait(self) -> None:
        for t in self._threads:
            t.join(timeout=cfg.CONF[GROUP].watch_timeout + cfg.CONF[GROUP].timeout + 5)
        self._threads = []

    def reset(self) -> None:
        pass


def resync(
    backend: Backend, plugin: Any, ctx: Any, synced: dict[str, Any], l3: Any | None = None
) -> dict[str, int]:
    """Write what differs between Neutron and the config API.

    `synced` remembers, per Neutron id, the revision_number(s) last written: an object
    at the same revision is skipped without asking the config API. Config objects in
    Neutron's projects that Neutron no longer has are deleted (floating IPs and routers
    before the ports and networks they name). `l3` is the L3 service plugin: routers
    and floating IPs are synced only when it is there.
    """
    counts = {"created": 0, "updated": 0, "unchanged": 0, "skipped": 0, "deleted": 0}
    counts["refused"] = 0  # stale, but the config API would not delete it (409)
    networks = plugin.get_networks(ctx)
    subnets = plugin.get_subnets(ctx)
    all_ports = plugin.get_ports(ctx)
    ports = [p for p in all_ports if not mapping.is_service_port(p)]
    groups = plugin.get_security_groups(ctx)
    routers = l3.get_routers(ctx) if l3 is not None else []
    fips = l3.get_floatingips(ctx) if l3 is not None else []

    def sync(obj: JSON, key: Any, put: Callable[[], str], *revisioned: JSON) -> None:
        if synced.get(obj["id"]) == key and _revisioned(obj, *revisioned):
            counts["skipped"] += 1
            return
        counts[put()] += 1
        synced[obj["id"]] = key

    by_net: dict[str, list[JSON]] = {}
    for s in subnets:
        by_net.setdefault(s["network_id"], []).append(s)
    for net in networks:
        own = by_net.get(net["id"], [])
        key = (net.get("revision_number"), _revisions(own))
        sync(net, key, partial(backend.put_network, net, own), *own)
    for group in groups:
        key = (
            group.get("revision_number"),
            tuple(sorted(r["id"] for r in group.get("security_group_rules") or [])),
        )
        try:
            sync(group, key, partial(backend.put_security_group, group))
        except mapping.Unsupported as exc:  # made before this driver: cannot be held
            LOG.error("vrstack: security group %s skipped: %s", group["id"], exc)
    for port in ports:
        sync(port, port.get("revision_number"), partial(backend.put_port, port))
    # After the networks and ports they name. A router's interfaces are its ports.
    subnet_by_id = {s["id"]: s for s in subnets}
    for router in routers:
        own = mapping.router_interface_ports(router["id"], all_ports)
        key = (router.get("revision_number"), _revisions(own))
        sync(router, key, partial(backend.put_router, router, own, subnet_by_id), *own)
    for fip in fips:
        sync(fip, fip.get("revision_number"), partial(backend.put_floating_ip, fip))

    keep = {o["id"] for o in (*networks, *ports, *groups, *routers, *fips)}
    keep |= {mapping.no_rule_uuid(p["project_id"]) for p in ports}
    # Only inside the projects this driver made: objects elsewhere are someone else's.
    projects = {
        o["uuid"]
        for o in backend.api.list_all("project")
        if o.get("description") == mapping.PROJECT_DESCRIPTION
    }
    rtypes = ("virtual-machine-interface", "security-group", "virtual-network")
    if l3 is not None:  # without it, Neutron cannot say which routers are stale
        rtypes = ("floating-ip", "logical-router", *rtypes)
    for rtype in rtypes:
        for project in sorted(projects):
            for obj in backend.api.list_all(rtype, parent_uuid=project):
                if obj["uuid"] in keep:
                    continue
                try:
                    if backend.api.delete(rtype, obj["uuid"]):
                        synced.pop(obj["uuid"], None)
                        counts["deleted"] += 1
                except ApiError as exc:
                    if exc.status != 409:
                        raise
                    # Still named by an object Neutron did not make: keep going, the
                    # next pass tries again once that one is gone.
                    LOG.warning("vrstack: resync kept %s %s: %s", rtype, obj["uuid"], exc)
                    counts["refused"] += 1
    return counts


def _revisions(objs: list[JSON]) -> tuple[tuple[str, Any], ...]:
    """The ids and revisions of the objects one config object is made from."""
    return tuple(sorted((o["id"], o.get("revision_number")) for o in objs))


def _revisioned(*objs: JSON) -> bool:
    """Revision numbers come from Neutron's `revisions` service plugin; without it,
    nothing can be skipped and every object is compared with the config API."""
    return all(o.get("revision_number") is not None for o in objs)
