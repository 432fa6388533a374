"""Security groups through Neutron's real ML2 plugin and API (in-memory SQLite) with the
`vrstack` driver, into a real `vrstack-api` process on loopback: groups and rules land
in the config API, a rule the agent cannot enforce is refused with a 4xx and written
nowhere, rule and group deletes reach the config API, ports carry their groups (the
no-rule group for port security without groups), and the resync restores and prunes."""

from __future__ import annotations

from typing import Any

import neutronkit
from neutronkit import api_call

from vrstack.openstack import mapping

JSON = dict[str, Any]


class TestSecurityGroups(neutronkit.VrstackMl2Case):
    def neutron(self, method: str, collection: str, body: JSON | None = None, id: str = "") -> Any:
        """One request to Neutron's API; returns (status, body)."""
        if method == "POST":
            req = self.new_create_request(collection, body, self.fmt)
        elif method == "DELETE":
            req = self.new_delete_request(collection, id)
        else:
            req = self.new_show_request(collection, id, self.fmt)
        res = req.get_response(self.api)
        return res.status_int, (self.deserialize(self.fmt, res) if res.body else None)

    def group(self, uid: str) -> Any:
        return api_call(self.cfgapi, "GET", f"/security-groups/{uid}")

    def rule(self, group: str, **kw: Any) -> tuple[int, Any]:
        body = {"security_group_rule": {"security_group_id": group, "ethertype": "IPv4", **kw}}
        return self.neutron("POST", "security-group-rules", body)  # type: ignore[no-any-return]

    def test_groups_rules_and_ports_reach_the_config_api(self) -> None:
        status, body = self.neutron(
            "POST", "security-groups", {"security_group": {"name": "web", "description": "www"}}
        )
        assert status == 201, body
        web = body["security_group"]
        got = self.group(web["id"])
        assert got is not None, "a new group is in the config API"
        assert got["parent_uuid"] == mapping.project_uuid(web["project_id"])
        assert got["description"] == "web"
        assert {r["rule_id"] for r in got["rules"]} == {
            r["id"] for r in web["security_group_rules"]
        }

        status, body = self.rule(
            web["id"],
            direction="ingress",
            protocol="tcp",
            port_range_min=80,
            port_range_max=80,
            remote_ip_prefix="198.18.0.0/15",
        )
        assert status == 201, body
        http = body["security_group_rule"]
        mapped = [r for r in self.group(web["id"])["rules"] if r["rule_id"] == http["id"]]
        assert mapped == [
            {
                "rule_id": http["id"],
                "direction": "ingress",
                "ethertype": "IPv4",
                "protocol": "tcp",
                "port_range": [80, 80],
                "remote_prefix": "198.18.0.0/15",
            }
        ]

        # ICMP type 8: the flow key holds no ICMP type, so the agent could not enforce it.
        before = self.group(web["id"])
        status, body = self.rule(
            web["id"], direction="ingress", protocol="icmp", port_range_min=8, port_range_max=0
        )
        assert 400 <= status < 500, body
        assert "vrstack" in body["NeutronError"]["message"], body
        assert "ICMP type" in body["NeutronError"]["message"], body
        _, shown = self.neutron("GET", "security-groups", id=web["id"])
        assert len(shown["security_group"]["security_group_rules"]) == len(before["rules"])
        assert self.group(web["id"])["rules"] == before["rules"]

        status, _ = self.neutron("DELETE", "security-group-rules", id=http["id"])
        assert status == 204
        assert http["id"] not in {r["rule_id"] for r in self.group(web["id"])["rules"]}

        with self.subnet(cidr="198.18.66.0/24") as sub:
            with self.port(subnet=sub, security_groups=[web["id"]]) as port:
                vmi = api_call(
                    self.cfgapi, "GET", f"/virtual-machine-interfaces/{port['port']['id']}"
                )
                assert vmi["security_groups"] == [web["id"]]
                # Neutron refuses to delete a group in use: the port goes first.
                self._delete("ports", port["port"]["id"])
            with self.port(subnet=sub) as port:
                # Neutron gives a port without groups its project's default group.
                default = port["port"]["security_groups"]
                assert len(default) == 1
                vmi = api_call(
                    self.cfgapi, "GET", f"/virtual-machine-interfaces/{port['port']['id']}"
                )
                assert vmi["security_groups"] == default
                # (Its rules come from Neutron's templates, which its unit-test database
                # does not hold: compare with what Neutron has.)
                _, shown = self.neutron("GET", "security-groups", id=default[0])
                assert {r["rule_id"] for r in self.group(default[0])["rules"]} == {
                    r["id"] for r in shown["security_group"]["security_group_rules"]
                }
            with self.port(subnet=sub, security_groups=[]) as port:
                vmi = api_call(
                    self.cfgapi, "GET", f"/virtual-machine-interfaces/{port['port']['id']}"
                )
                no_rule = mapping.no_rule_uuid(port["port"]["project_id"])
                assert vmi["security_groups"] == [no_rule], "port security on, no group"
                assert self.group(no_rule)["rules"] == []

        status, _ = self.neutron("DELETE", "security-groups", id=web["id"])
        assert status == 204
        assert self.group(web["id"]) is None, "the group's delete reaches the config API"

    def test_resync_restores_and_prunes_groups(self) -> None:
        status, body = self.neutron("POST", "security-groups", {"security_group": {"name": "a"}})
        assert status == 201, body
        group = body["security_group"]
        assert self.group(group["id"]) is not None
        api_call(self.cfgapi, "DELETE", f"/security-groups/{group['id']}")
        stray = api_call(
            self.cfgapi,
            "POST",
            "/security-groups",
            {"name": "stray", "parent_uuid": mapping.project_uuid(group["project_id"])},
        )
        counts = self.mech.resync()
        assert counts["created"] >= 1 and counts["deleted"] >= 1, counts
        assert self.group(group["id"]) is not None, "the resync writes a missing group"
        assert self.group(stray["uuid"]) is None, "and deletes one Neutron does not have"
        again = self.mech.resync()
        assert again["created"] == again["updated"] == again["deleted"] == 0, again
