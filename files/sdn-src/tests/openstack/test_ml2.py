"""The `vrstack` mechanism driver inside Neutron's real ML2 plugin (Neutron's own test
base: the API, ML2, IPAM and an in-memory SQLite database) writing to a real
`vrstack-api` process on loopback."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any
from unittest import mock

import neutronkit
from neutron.db import models_v2, provisioning_blocks
from neutron_lib import context as n_context
from neutron_lib.api.definitions import portbindings
from neutron_lib.callbacks import resources
from neutron_lib.db import api as db_api
from neutronkit import api_call, revision

from vrstack.config.testing import ADMIN_TOKEN, free_port
from vrstack.openstack import mapping, ml2
from vrstack.openstack.configapi import SyncConfigClient
from vrstack.openstack.portstate import PortStateWatcher

HOST = "compute1"


class TestVrstackDriver(neutronkit.VrstackMl2Case):
    def preSetUp(self) -> None:
        super().preSetUp()
        if not api_call(self.cfgapi, "GET", f"/virtual-routers?name={HOST}")["items"]:
            api_call(
                self.cfgapi,
                "POST",
                "/virtual-routers",
                {"name": HOST, "fabric_address": "198.18.2.11", "datapath": "user"},
            )

    def vn(self, net_id: str) -> Any:
        return api_call(self.cfgapi, "GET", f"/virtual-networks/{net_id}")

    def vmi(self, port_id: str) -> Any:
        return api_call(self.cfgapi, "GET", f"/virtual-machine-interfaces/{port_id}")

    def test_network_subnet_and_port_land_in_the_config_api(self) -> None:
        with (
            self.network() as net,
            self.subnet(network=net, cidr="198.18.64.0/24", dns_nameservers=["198.18.64.2"]) as sub,
        ):
            net_id = net["network"]["id"]
            vn = self.vn(net_id)
            assert vn["fq_name"] == [mapping.project_uuid(self._project_id), net_id]
            assert [s["cidr"] for s in vn["subnets"]] == ["198.18.64.0/24"]
            assert vn["subnets"][0]["gateway"] == sub["subnet"]["gateway_ip"]
            assert vn["subnets"][0]["dhcp"]["dns_servers"] == ["198.18.64.2"]
            with self.port(subnet=sub) as port:
                p = port["port"]
                vmi = self.vmi(p["id"])
                assert vmi["virtual_network"] == net_id
                assert vmi["mac_address"] == p["mac_address"]
                assert [f["ip_address"] for f in vmi["fixed_ips"]] == [
                    f["ip_address"] for f in p["fixed_ips"]
                ]
                assert "virtual_router" not in vmi
            self._delete("ports", p["id"])
            assert self.vmi(p["id"]) is None, "port delete must reach the config API"
            self._delete("subnets", sub["subnet"]["id"])
            assert self.vn(net_id)["subnets"] == []
            self._delete("networks", net_id)
        assert self.vn(net_id) is None

    def test_port_binding_gives_vif_type_vrouter_and_binds_the_vmi(self) -> None:
        with self.subnet(cidr="198.18.65.0/24") as sub:
            with self.port(
                subnet=sub,
                is_admin=True,
                arg_list=(portbindings.HOST_ID,),
                **{portbindings.HOST_ID: HOST},
            ) as port:
                p = port["port"]
                assert p[portbindings.VIF_TYPE] == "vrouter"
                assert p[portbindings.VIF_DETAILS][portbindings.CAP_PORT_FILTER] is False
                vr = api_call(self.cfgapi, "GET", f"/virtual-routers?name={HOST}")["items"][0]
                assert self.vmi(p["id"])["virtual_router"] == vr["uuid"]
            with self.port(
                subnet=sub,
                is_admin=True,
                arg_list=(portbindings.HOST_ID,),
                **{portbindings.HOST_ID: "nohost"},
            ) as port:
                assert port["port"][portbindings.VIF_TYPE] == portbindings.VIF_TYPE_BINDING_FAILED

    def test_port_stays_down_until_its_agent_reports_it_up(self) -> None:
        """Bound: DOWN with a provisioning block. A report from another host changes
        nothing; the bound host's `up` completes the block (ACTIVE, and Nova is told
        network-vif-plugged); its `down` makes the port DOWN again."""
        # Neutron's test base turns its Nova notifier off; hook it up as the plugin does
        # with notify_nova_on_port_status_changes, and catch what it queues for Nova.
        notifier = self.driver.nova_notifier
        hooks = (
            (models_v2.Port, "after_update", notifier.send_port_status),
            (models_v2.Port.status, "set", notifier.record_port_status_changed),
        )
        for hook in hooks:
            db_api.sqla_listen(*hook)
        self.addCleanup(lambda: [db_api.sqla_remove(*hook) for hook in hooks])
        with (
            mock.patch.object(notifier.batch_notifier, "queue_event") as queued,
            self.subnet(cidr="198.18.69.0/24") as sub,
            self.port(
                subnet=sub,
                is_admin=True,
                device_owner="compute:nova",
                device_id="7f0c58a2-5b8e-4d0e-9a55-2b1e7f3c6d01",
                arg_list=(portbindings.HOST_ID,),
                **{portbindings.HOST_ID: HOST},
            ) as port,
        ):
            pid = port["port"]["id"]
            ctx = n_context.get_admin_context()
            assert port["port"]["status"] == "DOWN"
            assert provisioning_blocks.is_object_blocked(ctx, pid, resources.PORT)
            client = SyncConfigClient(self.cfgapi.url, ADMIN_TOKEN, 5.0)
            watcher = PortStateWatcher(client, self.mech.port_state, poll=2.0)
            watcher.step()  # the listing: where the watch starts

            def report(host: str, status: str) -> None:
                body = {"virtual_router": host, "status": status, "tap": "tap" + pid[:11]}
                if api_call(self.cfgapi, "GET", f"/port-states/{pid}") is None:
                    api_call(
                        self.cfgapi, "POST", "/port-states", {"uuid": pid, "name": pid, **body}
                    )
                else:
                    api_call(self.cfgapi, "PUT", f"/port-states/{pid}", body)
                assert watcher.step() >= 1, "the watch must see the report"

            def status() -> str:
                return str(self._show("ports", pid)["port"]["status"])

            report("compute9", "up")  # not where the port is bound
            assert status() == "DOWN"
            assert provisioning_blocks.is_object_blocked(ctx, pid, resources.PORT)
            report(HOST, "up")
            assert status() == "ACTIVE"
            assert not provisioning_blocks.is_object_blocked(ctx, pid, resources.PORT)
            events = [c.args[0] for c in queued.call_args_list if c.args and c.args[0]]
            plugged = [e for e in events if e["name"] == "network-vif-plugged"]
            assert [(e["tag"], e["status"]) for e in plugged] == [(pid, "completed")]
            report(HOST, "down")
            assert status() == "DOWN"
            # The port deleted in Neutron: its state goes too (its compute may be gone).
            self._delete("ports", pid, as_admin=True)
            assert api_call(self.cfgapi, "GET", f"/port-states/{pid}") is None

    def test_the_worker_runs_the_watch_and_survives_a_config_api_outage(self) -> None:
        """get_workers() gives Neutron one worker (for neutron-periodic-workers); its
        watch against a config API that is not there logs, backs off, and stops."""
        workers = self.mech.get_workers()
        assert [type(w) for w in workers] == [ml2.VrstackWorker]
        assert workers[0].worker_process_count == 0  # a thread in the services worker
        dead = SyncConfigClient(f"http://127.0.0.1:{free_port()}", ADMIN_TOKEN, 1.0)
        watcher = PortStateWatcher(dead, self.mech.port_state, poll=1.0)
        stop = threading.Event()
        t = threading.Thread(target=watcher.run, args=(stop,), daemon=True)
        with self.assertLogs("vrstack.openstack.portstate", logging.WARNING) as logs:
            t.start()
            time.sleep(1.5)  # tries at 0 s and after 1 s; the next one after 2 more
            stop.set()
            t.join(5)
        assert not t.is_alive(), "the watch must stop when asked"
        assert watcher.errors == 2, watcher.errors
        assert "retrying in 1 s" in logs.output[0] and "retrying in 2 s" in logs.output[1]
        assert "unreachable" in logs.output[0]
        # The worker starts both loops and stops them when Neutron stops it.
        worker = workers[0]
        worker.start()
        assert {t.name for t in worker._threads} == {"vrstack-port-states", "vrstack-resync"}
        worker.stop()
        worker.wait()
        assert worker._threads == []

    def test_config_api_conflict_fails_the_create_and_leaves_nothing(self) -> None:
        with self.subnet(cidr="198.18.66.0/24") as sub:
            net_id = sub["subnet"]["network_id"]
            # Someone holds .50 in the config API; Neutron's IPAM does not know.
            api_call(
                self.cfgapi,
                "POST",
                "/instance-ips",
                {"name": "held", "virtual_network": net_id, "ip_address": "198.18.66.50"},
            )
            fixed = [{"subnet_id": sub["subnet"]["id"], "ip_address": "198.18.66.50"}]
            res = self._create_port(self.fmt, net_id, fixed_ips=fixed)
            assert res.status_int == 409
            body = self.deserialize(self.fmt, res)
            assert "vrstack config API refused port" in body["NeutronError"]["message"]
            assert "198.18.66.50" in body["NeutronError"]["message"]
            ports = self._list("ports", query_params=f"network_id={net_id}")["ports"]
            assert ports == [], "ML2 must roll the port back"
            held = api_call(self.cfgapi, "GET", f"/instance-ips?virtual_network={net_id}")["items"]
            api_call(self.cfgapi, "DELETE", f"/instance-ips/{held[0]['uuid']}")

    def test_unreachable_config_api_fails_network_create(self) -> None:
        self.mech.backend.api.token = "wrong-token"
        try:
            res = self._create_network(self.fmt, "net-x", True)
            assert res.status_int == 503
            body = self.deserialize(self.fmt, res)
            assert "HTTP 401" in body["NeutronError"]["message"]
        finally:
            self.mech.backend.api.token = ADMIN_TOKEN
        assert self._list("networks", query_params="name=net-x")["networks"] == []

    def test_subnet_without_gateway_is_refused_in_precommit(self) -> None:
        with self.network() as net:
            res = self._create_subnet(
                self.fmt, net["network"]["id"], "198.18.67.0/24", gateway_ip=None
            )
            assert res.status_int == 400
            assert "need a gateway" in self.deserialize(self.fmt, res)["NeutronError"]["message"]
            assert self.vn(net["network"]["id"])["subnets"] == []

    def test_resync_restores_missing_objects_and_skips_unchanged_revisions(self) -> None:
        with self.subnet(cidr="198.18.68.0/24") as sub, self.port(subnet=sub) as port:
            port_id = port["port"]["id"]
            net_id = sub["subnet"]["network_id"]
            # Drift: the port vanished from the config API, a stray network appeared there.
            api_call(self.cfgapi, "DELETE", f"/virtual-machine-interfaces/{port_id}")
            stray = api_call(
                self.cfgapi,
                "POST",
                "/virtual-networks",
                {"name": "stray", "parent_uuid": mapping.project_uuid(self._project_id)},
            )
            synced: dict[str, Any] = {}
            counts = ml2.resync(self.mech.backend, self.driver, self.context, synced)
            # Deleted: the stray, and whatever earlier tests' Neutron databases left behind
            # in this module's config API (each test starts with an empty Neutron).
            assert counts["created"] == 1 and counts["deleted"] >= 1, counts
            assert self.vmi(port_id)["virtual_network"] == net_id
            assert self.vn(stray["uuid"]) is None
            before = revision(self.cfgapi)
            again = ml2.resync(self.mech.backend, self.driver, self.context, synced)
            assert again["created"] == again["updated"] == again["deleted"] == 0, again
            assert again["skipped"] >= 2
            assert revision(self.cfgapi) == before, "an in-sync resync must write nothing"


def test_port_relationships_are_there_before_a_workers_first_query() -> None:
    """A fresh process (a new API worker) can list ports with fields as its first request:
    Neutron's get_ports reads Port.port_forwardings before any query configures it."""
    import subprocess
    import sys

    code = (
        "from neutron.db import models_v2\n"
        "from vrstack.openstack import ml2\n"
        "before = hasattr(models_v2.Port, 'port_forwardings')\n"
        "ml2.configure_port_relationships()\n"
        "print(before, hasattr(models_v2.Port, 'port_forwardings'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.split() == ["False", "True"], out.stdout + out.stderr
