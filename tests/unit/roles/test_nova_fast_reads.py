"""The cheap reads that replace slow programs on a rerun (issue 7, helper D): the host
mappings through one SQL query instead of nova-manage, and the os-vif plugins from the
entry points instead of importing os-vif. Each must read the same fact as the old read."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path
from typing import Any, Self

import pytest

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import test_infra_tls_render as infra  # noqa: E402

SCRIPT = ROOT / "roles/nova_controller/files/host_mappings.py"


def load_script() -> types.ModuleType:
    spec = importlib.util.spec_from_file_location("host_mappings", SCRIPT)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "mysql+pymysql://nova:p%40ss%3Aw@db.example:3307/nova_api?charset=utf8mb4",
            {
                "host": "db.example",
                "port": 3307,
                "user": "nova",
                "password": "p@ss:w",
                "database": "nova_api",
                "charset": "utf8mb4",
            },
        ),
        (
            "mysql+pymysql://nova:a/b%25c@[fd00::1]/nova_api",
            {
                "host": "fd00::1",
                "port": 3306,
                "user": "nova",
                "password": "a/b%c",
                "database": "nova_api",
                "charset": "utf8mb4",
            },
        ),
        (
            "mysql+pymysql://nova:pw@198.18.0.10/nova_api?charset=utf8mb4&ssl_ca=/etc/ca.crt",
            {
                "host": "198.18.0.10",
                "port": 3306,
                "user": "nova",
                "password": "pw",
                "database": "nova_api",
                "charset": "utf8mb4",
                "ssl": {"ca": "/etc/ca.crt"},
            },
        ),
    ],
)
def test_connect_args_from_the_oslo_db_url(url: str, expected: dict[str, Any]) -> None:
    assert load_script().connect_args(url) == expected


def test_connect_args_refuses_another_database() -> None:
    with pytest.raises(ValueError, match="not a MySQL URL"):
        load_script().connect_args("sqlite:////var/lib/nova/nova.sqlite")


def rendered_nova_conf(tmp_path: Path) -> Path:
    render = infra.Render("lab-ctl1", ["nova_controller"])
    conf = tmp_path / "nova.conf"
    conf.write_text(render.template("nova_controller", "nova.conf.j2"))
    return conf


def test_reads_the_api_database_of_the_rendered_nova_conf(tmp_path: Path) -> None:
    """The script connects as nova.conf says (the lab's TLS CA included) and asks
    host_mappings, the table nova-manage cell_v2 list_hosts reads."""
    conf = rendered_nova_conf(tmp_path)
    seen: dict[str, Any] = {}

    class Cursor:
        def __enter__(self) -> Self:
            return self

        def __exit__(self, *exc: object) -> None:
            return None

        def execute(self, query: str) -> None:
            seen["query"] = query

        def fetchall(self) -> list[tuple[str]]:
            return [("lab-cmp2",), ("lab-cmp1",)]

    class Conn:
        def cursor(self) -> Cursor:
            return Cursor()

        def close(self) -> None:
            seen["closed"] = True

    def connect(**kwargs: Any) -> Conn:
        seen["args"] = kwargs
        return Conn()

    fake = types.ModuleType("pymysql")
    fake.connect = connect  # type: ignore[attr-defined]
    sys.modules["pymysql"] = fake
    try:
        hosts = load_script().mapped_hosts(str(conf))
    finally:
        del sys.modules["pymysql"]
    assert hosts == ["lab-cmp1", "lab-cmp2"]
    assert seen["query"] == "SELECT host FROM host_mappings"
    assert seen["closed"] is True
    args = seen["args"]
    render = infra.Render("lab-ctl1", ["nova_controller"])
    assert args["database"] == render.var("nova_controller_api_db_name")
    assert args["host"] == render.var("nova_controller_db_host")
    assert args["user"] == render.var("nova_controller_db_user")
    assert args["password"] == render.var("nova_controller_db_password")
    assert args["ssl"] == {"ca": render.var("nova_controller_infra_ca_file")}


def test_the_discover_task_runs_the_script_or_nova_manage() -> None:
    """argv: the venv's python with the script's text and nova.conf (no password), or
    nova-manage when nova_controller_host_mappings_sql is false."""
    import yaml

    tasks = yaml.safe_load((ROOT / "roles/nova_controller/tasks/discover.yml").read_text())
    (block,) = [t for t in tasks if "block" in t]
    (read,) = [t for t in block["block"] if t["name"] == "Read the host mappings"]
    expr = read["ansible.builtin.command"]["argv"].strip()[2:-2]
    expr = expr.replace("lookup('ansible.builtin.file', 'host_mappings.py')", "'SCRIPT'")
    render = infra.Render("lab-ctl1", ["nova_controller"])
    venv = render.var("nova_controller_venv_path")
    assert render.var(expr) == [f"{venv}/bin/python", "-c", "SCRIPT", "/etc/nova/nova.conf"]
    off = infra.Render("lab-ctl1", ["nova_controller"], nova_controller_host_mappings_sql=False)
    argv = off.var(expr)
    assert argv[0].endswith("/bin/nova-manage") and argv[-2:] == ["cell_v2", "list_hosts"]


def test_the_script_runs_as_python_c(tmp_path: Path) -> None:
    """`python -c TEXT nova.conf` (how the task runs it): without PyMySQL it fails loudly."""
    conf = rendered_nova_conf(tmp_path)
    out = subprocess.run(
        [sys.executable, "-S", "-c", SCRIPT.read_text(), str(conf)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode != 0 and "pymysql" in out.stderr, out.stderr


# ---- the os-vif plugins ----------------------------------------------------------------

OSVIF = ROOT / "roles/nova_compute/files/osvif_plugins.py"


def fake_site(tmp_path: Path, entry_points: str, modules: dict[str, str]) -> Path:
    """A site directory with os-vif's and vrstack's metadata, their modules and libvirt."""
    site = tmp_path / "site"
    for dist, text in (("os_vif-5.1.0", ""), ("vrstack-0.1.0", entry_points)):
        info = site / f"{dist}.dist-info"
        info.mkdir(parents=True)
        name, version = dist.split("-")
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
        (info / "entry_points.txt").write_text(text)
    (site / "libvirt.py").write_text("def getVersion():\n    return 9000000\n")
    for dotted, text in modules.items():
        path = site.joinpath(*dotted.split("."))
        path.mkdir(parents=True, exist_ok=True)
        (path / "__init__.py").write_text(text)
    return site


def run_osvif(site: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-S", "-c", OSVIF.read_text()],
        env={"PYTHONPATH": str(site)}, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_lists_the_plugins_whose_module_is_there_without_importing_them(tmp_path: Path) -> None:
    entry_points = (
        "[os_vif]\n"
        "vrouter = vrstack.openstack.osvif:VrouterPlugin\n"
        "ghost = vrstack.missing:Plugin\n"
        "gone = nopackage.plugin:Plugin\n"
    )
    # The plugin module would fail if imported: the read must not import it.
    modules = {
        "vrstack": "",
        "vrstack.openstack": "",
        "vrstack.openstack.osvif": "raise SystemExit(3)",
    }
    found = run_osvif(fake_site(tmp_path, entry_points, modules))
    assert found == {"plugins": ["vrouter"], "os_vif": "5.1.0", "libvirt": 9000000}


def test_no_vrouter_plugin_when_vrstack_is_not_installed(tmp_path: Path) -> None:
    found = run_osvif(fake_site(tmp_path, "", {}))
    assert "vrouter" not in found["plugins"]


def test_the_check_reads_metadata_or_asks_os_vif() -> None:
    import yaml

    tasks = yaml.safe_load((ROOT / "roles/nova_compute/tasks/verify_plugins.yml").read_text())
    code = tasks[0]["ansible.builtin.command"]["argv"][2][2:-2]
    code = code.replace("lookup('ansible.builtin.file', 'osvif_plugins.py')", "'SCRIPT'")
    assert infra.Render("lab-cmp1", ["nova_compute"]).var(code) == "SCRIPT"
    old = infra.Render("lab-cmp1", ["nova_compute"], nova_compute_plugins_from_metadata=False)
    assert "os_vif.initialize()" in old.var(code)
