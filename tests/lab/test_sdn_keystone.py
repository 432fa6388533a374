"""People's Keystone tokens on the deployed SDN APIs (issue 11; `sdn_keystone_auth`, on by
default): the config API and the collector check their static tokens first and then
Keystone. An admin's `openstack token issue` token writes; a `member` of one project reads
that project's networks only, writes nothing, and gets 403 on the fabric's analytics.

Needs the whole lab (the SDN and OpenStack stages) and the admin openrc site.yml writes.
"""

from __future__ import annotations

import secrets
import uuid
from typing import Any

import test_security as security
from labcloud import Cli
from test_security import Lab, call

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition


def token_of(cli: Cli) -> str:
    return str(cli.ok("token", "issue")["id"])


def network(cli: Cli, name: str) -> str:
    """A Neutron network; the ML2 driver has put it in the config API when this returns."""
    return str(cli.ok("network", "create", name)["id"])


def test_sdn_config_api_is_in_the_catalog(admin: Cli, lab: Lab) -> None:
    urls = {e["URL"] for e in admin.ok("endpoint", "list", "--service", "sdn")}
    assert urls == {lab.model["endpoints"]["api_url"]}, urls


def test_admin_token_writes_on_the_config_api(admin: Cli, lab: Lab) -> None:
    api = lab.model["endpoints"]["api_url"]
    token = token_of(admin)
    status, obj = call(f"{api}/projects", "POST", token, {"name": f"ks-{secrets.token_hex(3)}"})
    assert status == 201, f"create with an admin's Keystone token: {status} {obj}"
    try:
        assert call(f"{api}/projects/{obj['uuid']}", token=token)[0] == 200
    finally:
        status, body = call(f"{api}/projects/{obj['uuid']}", "DELETE", token)
    assert status == 204, f"delete with an admin's Keystone token: {status} {body}"
    assert call(f"{api}/projects/{obj['uuid']}", token=token)[0] == 404


def test_member_token_reads_its_project_only(
    admin: Cli, member: Cli, other_member: Cli, lab: Lab
) -> None:
    api = lab.model["endpoints"]["api_url"]
    tag = secrets.token_hex(3)
    mine = network(member, f"ks-a-{tag}")
    theirs = network(other_member, f"ks-b-{tag}")
    token = token_of(member)

    status, body = call(f"{api}/virtual-networks?limit=1000", token=token)
    assert status == 200, f"a member's token: {status} {body}"
    seen = {n["uuid"] for n in body["items"]}
    assert mine in seen, "the member does not see its own project's network"
    assert theirs not in seen, "the member sees another project's network"
    assert call(f"{api}/virtual-networks/{mine}", token=token)[0] == 200
    assert call(f"{api}/virtual-networks/{theirs}", token=token)[0] == 404
    # The fabric's objects are the operators'.
    assert call(f"{api}/virtual-routers", token=token)[0] == 403

    problems = []
    for method, path, payload in (
        ("PUT", f"/virtual-networks/{mine}", {"description": "ks-probe"}),
        ("DELETE", f"/virtual-networks/{theirs}", None),
        ("POST", "/projects", {"name": f"ks-probe-{tag}"}),
    ):
        status, answer = call(api + path, method, token, payload)
        if status != 403:
            problems.append(f"{method} {path} with a member's token: {status} {answer}")
    assert not problems, "; ".join(problems)
    admin_token = token_of(admin)
    for net in (mine, theirs):
        status, body = call(f"{api}/virtual-networks/{net}", token=admin_token)
        assert status == 200 and body.get("description") != "ks-probe", body

    # A token that is not Keystone's (nor a static one): 401, not 503 (Keystone is up).
    assert call(f"{api}/virtual-networks", token=uuid.uuid4().hex)[0] == 401


def test_member_token_on_the_collector(admin: Cli, member: Cli, lab: Lab) -> None:
    analytics = lab.model["endpoints"]["analytics_url"]
    token = token_of(member)
    for path in ("/status", "/alarms", "/overview"):
        status, body = call(analytics + path, token=token)
        assert status == 403, f"GET {path} with a member's token: {status} {body}"
    query: dict[str, Any] = {"table": "flows", "select": ["count()"], "since": "-1h"}
    status, body = call(f"{analytics}/query", "POST", token, query)
    assert status == 200, f"a member's flow query: {status} {body}"
    status, body = call(f"{analytics}/query", "POST", token, {"table": "logs"})
    assert status == 403, f"a member's log query: {status} {body}"
    status, body = call(f"{analytics}/status", token=token_of(admin))
    assert status == 200, f"GET /status with an admin's Keystone token: {status} {body}"
