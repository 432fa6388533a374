"""A floating IP reached from its server's own compute, on the deployed lab cloud.

A member's server sits on a network routed to an external network, with a floating IP
from it. A probe (a network namespace plugged into the vrouter as a port of the external
network, as the smoke play's probe is, `roles/smoke/files/vrstack_smoke_probe.py`) on the
server's compute pings the floating address and fetches the server's page through it:
the agent moves the flow from the external network's VRF to the server's and its reverse
back (`docs/sdn-agent.md`, "Floating IPs"). Once the floating IP is disassociated the
probe no longer gets in. Runs with the other lab checks (`make lab-api-test`).

Addresses: the external network is 198.19.49.0/24, the member's network 198.19.43.0/24
(in 198.18.0.0/15, used by nothing else in the lab).
"""

from __future__ import annotations

import json
import secrets
import shlex
import time
from typing import Any

import test_security as security
from labcloud import REPO, SERVER_TIMEOUT, Cli
from test_security import Lab, Node, on_node

lab = security.lab  # the module-scoped fixture (hosts from ansible-inventory): one definition

EXTERNAL_CIDR = "198.19.49.0/24"
TENANT_CIDR = "198.19.43.0/24"
PROBE_SRC = REPO / "roles" / "smoke" / "files" / "vrstack_smoke_probe.py"
PROBE = "/root/vrstack_fip_probe.py"
NETNS = "vrs-fip-near"


def dashed(project_id: str) -> str:
    """Neutron's project id as the config API's project uuid (as the smoke play does)."""
    p = project_id.replace("-", "")
    return f"{p[:8]}-{p[8:12]}-{p[12:16]}-{p[16:20]}-{p[20:]}"


def probe(lab: Lab, node: Node, *args: str, timeout: float = 180) -> dict[str, Any]:
    """One step of the probe tool on `node`: its JSON answer (with the exit status)."""
    out = on_node(lab, node, shlex.join(["python3", PROBE, *args]), timeout=timeout)
    try:
        answer: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError):
        answer = {"stdout": out.stdout[-400:], "stderr": out.stderr[-400:]}
    return answer | {"rc": out.returncode}


def test_a_probe_on_the_servers_compute_reaches_its_floating_ip(
    admin: Cli, member: Cli, lab: Lab
) -> None:
    tag = secrets.token_hex(3)
    ext = admin.ok("network", "create", "--external", f"fip-ext-{tag}")
    made: dict[str, str] = {}
    node: Node | None = None
    try:
        ext_sub = admin.ok(
            "subnet", "create", "--network", ext["id"], "--subnet-range", EXTERNAL_CIDR,
            f"fip-ext-{tag}",
        )  # fmt: skip
        net = member.ok("network", "create", f"fip-net-{tag}")
        sub = member.ok(
            "subnet", "create", "--network", net["id"], "--subnet-range", TENANT_CIDR, "s"
        )
        router = member.ok("router", "create", f"fip-rtr-{tag}")
        made["router"] = router["id"]
        member.quiet("router", "add", "subnet", router["id"], sub["id"])
        member.quiet("router", "set", "--external-gateway", ext["id"], router["id"])
        group = member.ok("security", "group", "create", f"fip-sg-{tag}")
        for rule in (("--protocol", "icmp"), ("--protocol", "tcp", "--dst-port", "80")):
            member.ok("security", "group", "rule", "create", "--ingress", *rule, group["id"])
        server = member.ok(
            "server", "create", "--image", "vrstack-guest", "--flavor", "vrstack.tiny",
            "--network", net["id"], "--security-group", group["id"], "--wait",
            f"fip-server-{tag}", timeout=SERVER_TIMEOUT,
        )  # fmt: skip
        assert server["status"] == "ACTIVE", server
        fixed = server["addresses"][f"fip-net-{tag}"][0]
        host = admin.ok("server", "show", server["id"])["OS-EXT-SRV-ATTR:host"].split(".")[0]
        nodes = [n for n in lab.nodes if n.name == host]
        assert nodes, f"the server's host {host!r} is not a lab node"
        node = nodes[0]
        port = member.ok("port", "list", "--server", server["id"])[0]
        fip = member.ok("floating", "ip", "create", ext["id"])
        member.quiet("floating", "ip", "set", "--port", port["ID"], fip["id"])
        address = fip["floating_ip_address"]

        # The probe: a port of the external network bound to the server's compute.
        near = admin.ok(
            "port", "create", "--network", ext["id"], "--host", host,
            "--device-owner", "compute:probe", f"fip-near-{tag}",
        )  # fmt: skip
        made["near"] = near["id"]
        copy = on_node(lab, node, f"cat > {PROBE} && chmod 0700 {PROBE}", PROBE_SRC.read_text())
        assert copy.returncode == 0, copy.stderr
        prefix = EXTERNAL_CIDR.split("/")[1]
        plugged = probe(
            lab, node, "up", "--name", NETNS, "--port-id", near["id"],
            "--network", ext["id"],
            "--instance", f"{dashed(ext['project_id'])}:{ext['id']}:{ext['id']}",
            "--mac", near["mac_address"],
            "--ip", f"{near['fixed_ips'][0]['ip_address']}/{prefix}",
            "--gateway", ext_sub["gateway_ip"],
        )  # fmt: skip
        assert plugged["rc"] == 0, plugged

        pinged = probe(lab, node, "wait-ping", "--name", NETNS, "--ip", address, "--timeout", "120")
        assert pinged["ok"], f"{host}: the probe on ext does not reach {address}: {pinged}"
        page = probe(lab, node, "http", "--name", NETNS, "--url", f"http://{address}/")
        assert page["ok"] and f" {fixed}/" in page["body"], page

        # Disassociated: the agent ends the floating IP's flows, the probe is out.
        # (The flows end at the agent's next sync: allow it a little time.)
        member.quiet("floating", "ip", "unset", "--port", fip["id"])
        deadline = time.monotonic() + 30
        while (after := probe(lab, node, "ping", "--name", NETNS, "--ip", address))["ok"]:
            assert time.monotonic() < deadline, f"{address} still answers when unset: {after}"
            time.sleep(2)
    finally:
        if node is not None and "near" in made:
            probe(lab, node, "down", "--name", NETNS, "--port-id", made["near"])
        if "near" in made:
            admin.run("port", "delete", made["near"])
        if node is not None:
            on_node(lab, node, f"rm -f {PROBE}")
        for server in member.ok("server", "list"):
            member.run("server", "delete", "--wait", server["ID"], timeout=SERVER_TIMEOUT)
        for fip in member.ok("floating", "ip", "list"):
            member.run("floating", "ip", "delete", fip["ID"])
        if "router" in made:
            member.run("router", "unset", "--external-gateway", made["router"])
            for itf in member.ok("router", "show", made["router"]).get("interfaces_info") or []:
                member.run("router", "remove", "port", made["router"], itf["port_id"])
            member.run("router", "delete", made["router"])
        admin.run("network", "delete", ext["id"])
