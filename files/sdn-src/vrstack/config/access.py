"""What a caller may see: the whole config, or only its own Keystone project's part.

Admins and the static tokens (the SDN services, the agents, the lab's reader) see
everything. A Keystone token whose roles are only read roles is scoped to the project
it was issued for: it sees the config project whose `keystone_id` is that project (the
Neutron driver sets it) and what belongs to it — networks, policies, security groups,
ports, floating IPs and routers (children of the project), the routing instances and
ACLs derived per network (grandchildren), and the instance IPs of its networks.
An object of another project reads as 404, like one that does not exist, and lists
leave it out. The fabric's objects (global config, virtual and BGP routers, service
health, port states) and the watch feed are not a tenant's: 403.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from aiohttp import web

from .auth import Identity
from .fields import FieldError
from .model import RESOURCES, Resource
from .objects import ConfigDB

JSON = dict[str, Any]
IDENTITY = web.RequestKey("identity", Identity)  # the auth middleware fills it
# Owned through their `virtual_network` (they have no parent).
VIA_NETWORK = ("instance-ip",)


@dataclass(frozen=True)
class Scope:
    """A project-scoped caller's project: its config object's uuid and name, if any."""

    who: str
    project_uuid: str = ""  # "" when the Keystone project has no config project yet
    project_name: str = ""

    def check_type(self, res: Resource) -> None:
        if res.name == "project" or res.parent or res.name in VIA_NETWORK:
            return
        raise web.HTTPForbidden(reason=f"{self.who} may not read {res.plural}: not a project's")

    def list_filters(self, res: Resource, filters: dict[str, str]) -> dict[str, str] | None:
        """The filters that keep a listing inside the project; None: nothing to list."""
        if not self.project_uuid:
            return None
        if res.parent == "project":
            if filters.get("parent_uuid", self.project_uuid) != self.project_uuid:
                return None
            return {**filters, "parent_uuid": self.project_uuid}
        return filters

    async def owns(self, db: ConfigDB, res: Resource, obj: JSON) -> bool:
        if not self.project_uuid:
            return False
        if res.name == "project":
            return bool(obj["uuid"] == self.project_uuid)
        if res.parent == "project":
            return bool(obj.get("parent_uuid") == self.project_uuid)
        if res.parent:  # under a network: fq_name is [project, network, name]
            return bool(obj.get("fq_name", [""])[0] == self.project_name)
        net = obj.get("virtual_network")
        if not net:
            return False
        try:
            network = await db.get(RESOURCES["virtual-network"], net)
        except FieldError:
            return False
        return bool(network.get("parent_uuid") == self.project_uuid)


async def scope_of(request: web.Request, db: ConfigDB) -> Scope | None:
    """None for a caller who sees everything, else its project's scope."""
    identity = request.get(IDENTITY)
    if identity is None or not identity.scoped:
        return None
    found, _, _ = await db.list_page(
        RESOURCES["project"], {"keystone_id": identity.project_id}, 1, None
    )
    if not found:
        return Scope(identity.name)
    return Scope(identity.name, found[0]["uuid"], found[0]["name"])
