"""Every module's documentation renders with ansible-doc from the built collection
(ansible-galaxy collection build, as shipped), doc fragments included."""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[4]
# The committed modules (one still being written may not parse yet; sanity checks it).
MODULES = sorted(
    Path(f).stem
    for f in subprocess.run(
        ["git", "-C", str(ROOT), "ls-files", "plugins/modules/*.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
)
# The modules that say "reads only" through the vrstack.cloud.read_only fragment.
READ_ONLY = {
    "analytics_query": "Any host that reaches the analytics API.",
    "checks": "Any host; the action runs on the deploy host.",
    "openstack_info": "A controller with the OpenStack venv.",
    "packages_missing": "Debian (dpkg) and FreeBSD (pkg) hosts.",
    "service_probe": "Any host with Python.",
    "sdn_status": "Debian (systemd) and FreeBSD (rc.d) nodes with the vrstack package.",
    "vrouter_agent_info": "A compute running C(vrstack-agent).",
}


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    work = tmp_path_factory.mktemp("built")
    subprocess.run(
        ["ansible-galaxy", "collection", "build", "--output-path", str(work), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (archive,) = work.glob("vrstack-cloud-*.tar.gz")
    dest = work / "ansible_collections" / "vrstack" / "cloud"
    with tarfile.open(archive) as tar:
        tar.extractall(dest, filter="data")
    # Outside the checkout, so only the built copy is found (not .collections or ansible.cfg).
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env["ANSIBLE_COLLECTIONS_PATH"] = str(work)
    names = [f"vrstack.cloud.{m}" for m in MODULES]
    proc = subprocess.run(
        ["ansible-doc", "--json", "-t", "module", *names],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    yield json.loads(proc.stdout)


@pytest.mark.parametrize("module", MODULES)
def test_every_module_renders_with_its_attributes(docs: dict[str, Any], module: str) -> None:
    doc = docs[f"vrstack.cloud.{module}"]["doc"]
    assert doc["module"] == module
    assert set(doc["attributes"]) >= {"check_mode", "diff_mode", "platform"}
    assert doc["attributes"]["check_mode"]["support"] == "full"


@pytest.mark.parametrize(("module", "platform"), sorted(READ_ONLY.items()))
def test_read_only_modules_take_the_fragment(
    docs: dict[str, Any], module: str, platform: str
) -> None:
    attrs = docs[f"vrstack.cloud.{module}"]["doc"]["attributes"]
    assert attrs == {
        "check_mode": {
            "support": "full",
            "description": "Reads only; runs the same in check mode.",
        },
        "diff_mode": {"support": "none", "description": "Changes nothing, so there is no diff."},
        "platform": {"support": "full", "platforms": "posix", "description": platform},
    }
