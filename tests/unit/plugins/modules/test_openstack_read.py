"""vrstack.cloud.openstack_info over plain HTTP (issue 7, helper D): against a fake Keystone,
nova and placement on loopback, main() reads the compute services, hypervisors and
resource providers with the fields openstacksdk gave, from the catalog's endpoint of the
cloud's interface and region, and words each failure with the API that failed."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from test_module_main import run as run_module

from ansible_collections.vrstack.cloud.plugins.module_utils import openstack_read

TOKEN = "tok-123"
SERVICES = [
    {"id": 1, "binary": "nova-compute", "host": "lab-cmp1", "state": "up", "status": "enabled"},
    {"id": 2, "binary": "nova-scheduler", "host": "lab-ctl1", "state": "up", "status": "enabled"},
]
HYPERVISORS = [
    {"id": 1, "hypervisor_hostname": "lab-cmp1", "state": "up", "status": "enabled",
     "hypervisor_type": "QEMU"},
]  # fmt: skip
PROVIDERS = [{"uuid": "5f1e-0001", "name": "lab-cmp1", "generation": 3}]


class Fake(http.server.BaseHTTPRequestHandler):
    answers: ClassVar[dict[str, tuple[int, Any]]] = {}
    seen: ClassVar[list[tuple[str, str, str]]] = []

    def log_message(self, *args: Any) -> None:
        return None

    def reply(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        raw = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        Fake.seen.append(("POST", self.path, ""))
        password = body["auth"]["identity"]["password"]["user"]["password"]
        if password != "adminpw":
            self.reply(
                401, {"error": {"message": "The request you have made requires authentication."}}
            )
            return
        port = self.server.server_address[1]
        base = f"http://127.0.0.1:{port}"
        catalog = [
            {"type": "compute", "endpoints": [
                {"interface": "public", "region": "RegionOne", "url": f"{base}/wrong"},
                {"interface": "internal", "region": "RegionTwo", "url": f"{base}/wrong"},
                {"interface": "internal", "region": "RegionOne", "url": f"{base}/compute/v2.1"},
            ]},
            {"type": "placement", "endpoints": [
                {"interface": "internal", "region_id": "RegionOne", "url": f"{base}/placement/"},
            ]},
        ]  # fmt: skip
        self.reply(201, {"token": {"catalog": catalog}}, {"X-Subject-Token": TOKEN})

    def do_GET(self) -> None:
        Fake.seen.append(("GET", self.path, self.headers.get("X-Auth-Token", "")))
        if self.headers.get("X-Auth-Token") != TOKEN:
            self.reply(401, {"error": {"message": "no token"}})
            return
        status, body = Fake.answers.get(self.path, (404, {"itemNotFound": {"message": "nope"}}))
        self.reply(status, body)


@pytest.fixture
def server() -> Iterator[str]:
    Fake.answers = {
        "/compute/v2.1/os-services": (200, {"services": SERVICES}),
        "/compute/v2.1/os-hypervisors/detail": (200, {"hypervisors": HYPERVISORS}),
        "/placement/resource_providers": (200, {"resource_providers": PROVIDERS}),
    }
    Fake.seen = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Fake)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        httpd.server_close()


def clouds(tmp_path: Path, url: str, password: str = "adminpw") -> Path:
    path = tmp_path / "clouds.yaml"
    path.write_text(
        "clouds:\n  vrstack-admin:\n    auth:\n"
        f"      auth_url: {url}/v3\n      username: admin\n      password: {password}\n"
        "      project_name: admin\n      user_domain_name: Default\n"
        "      project_domain_name: Default\n"
        "    region_name: RegionOne\n    interface: internal\n"
    )
    return path


def args(path: Path, gather: list[str], **extra: Any) -> dict[str, Any]:
    return {"cloud": "vrstack-admin", "gather": gather, "clouds_yaml": str(path), **extra}


def test_reads_the_lists_with_the_fields_openstacksdk_gave(tmp_path: Path, server: str) -> None:
    gather = ["compute_services", "hypervisors", "resource_providers"]
    rc, result = run_module(tmp_path, "openstack_info", args(clouds(tmp_path, server), gather))
    assert rc == 0, result
    assert result["changed"] is False
    assert result["compute_services"] == [
        {"binary": "nova-compute", "host": "lab-cmp1", "state": "up", "status": "enabled"},
        {"binary": "nova-scheduler", "host": "lab-ctl1", "state": "up", "status": "enabled"},
    ]
    assert result["hypervisors"] == [
        {"name": "lab-cmp1", "state": "up", "status": "enabled", "type": "QEMU"}
    ]
    assert result["resource_providers"] == [{"id": "5f1e-0001", "name": "lab-cmp1"}]
    # One login, then one GET a list at the internal endpoint of RegionOne, with the token.
    assert [s[0] for s in Fake.seen] == ["POST", "GET", "GET", "GET"]
    assert all(s[2] == TOKEN for s in Fake.seen[1:])
    assert not any("/wrong" in s[1] for s in Fake.seen)


def test_a_refused_login_names_keystone(tmp_path: Path, server: str) -> None:
    path = clouds(tmp_path, server, password="other")
    rc, result = run_module(tmp_path, "openstack_info", args(path, ["resource_providers"]))
    assert rc == 1
    assert result["msg"].startswith("keystone (cloud vrstack-admin): login as admin: HTTP 401")


def test_a_failing_api_is_named(tmp_path: Path, server: str) -> None:
    Fake.answers["/compute/v2.1/os-hypervisors/detail"] = (
        500,
        {"computeFault": {"message": "boom"}},
    )
    rc, result = run_module(
        tmp_path, "openstack_info", args(clouds(tmp_path, server), ["hypervisors"])
    )
    assert rc == 1
    assert result["msg"].startswith("the compute API (cloud vrstack-admin): GET ")
    assert "HTTP 500" in result["msg"]


def test_no_endpoint_in_the_region(tmp_path: Path, server: str) -> None:
    path = clouds(tmp_path, server)
    rc, result = run_module(
        tmp_path, "openstack_info", args(path, ["resource_providers"], region="RegionTwo")
    )
    assert rc == 1
    assert "the placement API" in result["msg"] and "region RegionTwo" in result["msg"]


def test_no_keystone_answer(tmp_path: Path) -> None:
    path = clouds(tmp_path, "http://127.0.0.1:9")
    rc, result = run_module(tmp_path, "openstack_info", args(path, ["compute_services"]))
    assert rc == 1 and result["msg"].startswith("keystone (cloud vrstack-admin): no answer")


def test_other_lists_or_transport_sdk_use_openstacksdk(tmp_path: Path, server: str) -> None:
    """images need openstacksdk; here it is not installed, so the module says so (and
    made no HTTP request)."""
    path = clouds(tmp_path, server)
    for extra in ({"gather": ["images"]}, {"transport": "sdk"}):
        rc, result = run_module(
            tmp_path, "openstack_info", {**args(path, ["compute_services"]), **extra}
        )
        try:
            import openstack  # noqa: F401
        except ImportError:
            assert rc == 1 and "openstacksdk" in result["msg"], result
    assert Fake.seen == []


def test_endpoint_picks_interface_and_region() -> None:
    catalog = [
        {"type": "compute", "endpoints": [
            {"interface": "public", "region": "R1", "url": "https://pub/v2.1"},
            {"interface": "internal", "region": "R1", "url": "https://int/v2.1/"},
        ]},
    ]  # fmt: skip
    assert openstack_read.endpoint(catalog, "compute", "R1", "internal") == "https://int/v2.1"
    assert openstack_read.endpoint(catalog, "compute", "R1", "public") == "https://pub/v2.1"
    with pytest.raises(openstack_read.ReadError, match="no admin endpoint"):
        openstack_read.endpoint(catalog, "compute", "R1", "admin")
