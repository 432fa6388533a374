"""sdn_wheel's logic: the source digest, the version it gives, and a real pip build."""

from __future__ import annotations

import shutil
import zipfile
from pathlib import Path

import pytest

from ansible_collections.vrstack.cloud.plugins.module_utils import sdn_wheel

SDN_SRC = Path(__file__).resolve().parents[4] / "files" / "sdn-src"

PYPROJECT = """\
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "demo-pkg"
version = "1.2.3"
dependencies = [
    "aiohttp>=3.9,<4",
    "PyYAML>=6",
]

[project.scripts]
demo = "demo_pkg.main:main"
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "demo_pkg" / "sub").mkdir(parents=True)
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "demo_pkg" / "__init__.py").write_text("")
    (src / "demo_pkg" / "main.py").write_text("def main() -> int:\n    return 0\n")
    (src / "demo_pkg" / "sub" / "__init__.py").write_text("X = 1\n")
    return src


def test_read_project_of_the_real_package() -> None:
    proj = sdn_wheel.read_project(str(SDN_SRC))
    assert proj.name == "vrstack" and proj.version
    assert any(r.startswith("aiohttp") for r in proj.requires)


def test_digest_follows_content_not_caches(project: Path) -> None:
    files = sdn_wheel.source_files(str(project), "demo_pkg")
    assert files == [
        "demo_pkg/__init__.py",
        "demo_pkg/main.py",
        "demo_pkg/sub/__init__.py",
        "pyproject.toml",
    ]
    first = sdn_wheel.digest(str(project), files)
    (project / "demo_pkg" / "__pycache__").mkdir()
    (project / "demo_pkg" / "__pycache__" / "main.cpython-311.pyc").write_bytes(b"junk")
    (project / "demo_pkg" / "notes.txt").write_text("not packaged")
    assert sdn_wheel.source_files(str(project), "demo_pkg") == files
    assert sdn_wheel.digest(str(project), files) == first
    (project / "demo_pkg" / "sub" / "__init__.py").write_text("X = 2\n")
    assert sdn_wheel.digest(str(project), files) != first


@pytest.mark.parametrize(
    ("version", "sha", "expected"),
    [
        ("0.1.0", "0123456789abcdef", "0.1.0+src0123456789ab"),
        ("2.0+old", "ffffffffffff0000", "2.0+srcffffffffffff"),
    ],
)
def test_local_version(version: str, sha: str, expected: str) -> None:
    assert sdn_wheel.local_version(version, sha) == expected


def test_wheel_name() -> None:
    assert sdn_wheel.wheel_name("demo-pkg", "1.0+srcab") == "demo_pkg-1.0+srcab-py3-none-any.whl"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[tool.x]\n", r"no \[project\] table"),
        ('[project]\nname = "x"\n', "must be literal strings"),
    ],
)
def test_bad_project_file_names_the_file(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "pyproject.toml").write_text(text)
    with pytest.raises(sdn_wheel.WheelError, match=message) as err:
        sdn_wheel.read_project(str(tmp_path))
    assert str(tmp_path / "pyproject.toml") in str(err.value)


def test_dry_run_builds_nothing(project: Path, tmp_path: Path) -> None:
    res = sdn_wheel.build(str(project), str(tmp_path / "cache"), dry_run=True)
    assert res.changed and not (tmp_path / "cache").exists()
    assert res.dist_info == f"demo_pkg-{res.version}.dist-info"


def test_build_once_per_content(project: Path, tmp_path: Path) -> None:
    """A real `pip wheel` (build isolation fetches setuptools from the configured index)."""
    cache = tmp_path / "cache"
    first = sdn_wheel.build(str(project), str(cache))
    assert first.changed and Path(first.path).is_file()
    assert not (project / "build").exists() and not list(project.glob("*.egg-info"))
    with zipfile.ZipFile(first.path) as whl:
        names = whl.namelist()
        meta = whl.read(f"{first.dist_info}/METADATA").decode()
        entry = whl.read(f"{first.dist_info}/entry_points.txt").decode()
    assert "demo_pkg/sub/__init__.py" in names
    assert f"Version: {first.version}" in meta and "Requires-Dist: PyYAML>=6" in meta
    assert "demo = demo_pkg.main:main" in entry

    again = sdn_wheel.build(str(project), str(cache))
    assert not again.changed and again.path == first.path
    assert sorted(p.name for p in cache.iterdir()) == [first.filename]  # no temp left

    (project / "demo_pkg" / "main.py").write_text("def main() -> int:\n    return 1\n")
    changed = sdn_wheel.build(str(project), str(cache))
    assert changed.changed and changed.version != first.version
    shutil.rmtree(cache)
