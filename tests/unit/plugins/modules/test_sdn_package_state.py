"""vrstack.cloud.sdn_package_state: `current` only when every install step of sdn_package
would find its work done (a table of what each step checks), on a scratch host tree."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_module_main import run as run_module

from ansible_collections.vrstack.cloud.plugins.module_utils import sdn_wheel
from ansible_collections.vrstack.cloud.plugins.module_utils.sdn_package_state import (
    SdnPackageStateError,
    probe,
)

WHEEL = "vrstack-0.1.0+srcabc-py3-none-any.whl"
DIST_INFO = "vrstack-0.1.0+srcabc.dist-info"
CONTENT = b"PK this run's wheel"


def dpkg(installed: set[str]) -> Callable[[list[str]], tuple[int, str, str]]:
    def run(cmd: list[str]) -> tuple[int, str, str]:
        names = cmd[cmd.index("--") + 1 :]
        out = "".join(f"{n}\t{n}\tinstalled\n" for n in names if n in installed)
        return (0 if len(out.splitlines()) == len(names) else 1), out, ""

    return run


def host(tmp_path: Path) -> tuple[Path, Path]:
    """A host where everything is done: the wheel copied, the venv with the package."""
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    wheels.mkdir()
    (wheels / WHEEL).write_bytes(CONTENT)
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "python").write_text("")
    (venv / "lib" / "python3.11" / "site-packages" / DIST_INFO).mkdir(parents=True)
    return wheels, venv


def check(
    tmp_path: Path,
    *,
    installed: frozenset[str] = frozenset({"python3-venv"}),
    owned: bool = True,
    checksum: str | None = None,
) -> dict[str, object]:
    wheels, venv = tmp_path / "wheels", tmp_path / "venv"
    return probe(
        venv=str(venv),
        wheel_dir=str(wheels),
        filename=WHEEL,
        checksum=checksum or hashlib.sha256(CONTENT).hexdigest(),
        dist_info=DIST_INFO,
        packages=["python3-venv"],
        manager="dpkg",
        run=dpkg(set(installed)),
        owned=lambda path, mode: owned,
    )


def test_a_host_with_everything_done_is_current(tmp_path: Path) -> None:
    host(tmp_path)
    assert check(tmp_path) == {"current": True, "reasons": []}


def _remove_dist_info(tmp_path: Path) -> None:
    (tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / DIST_INFO).rmdir()


CASES: list[tuple[str, Callable[[Path], None], dict[str, object], str]] = [
    ("OS package", lambda p: None, {"installed": frozenset()}, "OS packages missing: python3-venv"),
    ("new source", lambda p: None, {"checksum": "0" * 64}, "differs from this run's wheel"),
    ("owner", lambda p: None, {"owned": False}, "owner or mode differ"),
    ("no copy", lambda p: (p / "wheels" / WHEEL).unlink(), {}, f"{WHEEL} is not there"),
    ("no dir", lambda p: shutil.rmtree(p / "wheels"), {}, "wheels is not there"),
    (
        "older wheel",
        lambda p: (p / "wheels" / "vrstack-0.0.9-py3-none-any.whl").write_bytes(b"old"),
        {},
        "wheels of older sources: vrstack-0.0.9",
    ),
    ("no venv", lambda p: (p / "venv" / "bin" / "python").unlink(), {}, "no virtualenv at"),
    ("not installed", _remove_dist_info, {}, f"{DIST_INFO} is not installed"),
]


@pytest.mark.parametrize(("case", "spoil", "kwargs", "reason"), CASES, ids=[c[0] for c in CASES])
def test_anything_an_install_step_would_change_makes_it_not_current(
    tmp_path: Path,
    case: str,
    spoil: Callable[[Path], None],
    kwargs: dict[str, object],
    reason: str,
) -> None:
    host(tmp_path)
    spoil(tmp_path)
    got = check(tmp_path, **kwargs)  # type: ignore[arg-type]
    assert got["current"] is False, case
    assert any(reason in r for r in got["reasons"]), got["reasons"]  # type: ignore[union-attr]


def test_a_broken_package_database_fails(tmp_path: Path) -> None:
    host(tmp_path)
    with pytest.raises(SdnPackageStateError, match="failed with exit 2"):
        probe(
            venv=str(tmp_path / "venv"),
            wheel_dir=str(tmp_path / "wheels"),
            filename=WHEEL,
            checksum="x",
            dist_info=DIST_INFO,
            packages=["python3-venv"],
            manager="dpkg",
            run=lambda cmd: (2, "", "dpkg: database locked"),
        )


def test_the_wheel_module_returns_the_checksum_and_the_fact_this_read_needs(tmp_path: Path) -> None:
    """sdn_wheel with `fact`: one task builds the wheel and keeps it (with its SHA-256)."""
    src = tmp_path / "src"
    (src / "demo_pkg").mkdir(parents=True)
    (src / "demo_pkg" / "__init__.py").write_text("")
    (src / "pyproject.toml").write_text('[project]\nname = "demo-pkg"\nversion = "1.0"\n')
    cache = tmp_path / "cache"
    # A wheel already in the cache for this content: the module finds it, builds nothing.
    planned = sdn_wheel.build(str(src), str(cache), dry_run=True)
    cache.mkdir()
    Path(planned.path).write_bytes(CONTENT)
    args = {"src": str(src), "dest": str(cache), "fact": "sdn_package_wheel"}
    rc, got = run_module(tmp_path, "sdn_wheel", args)
    assert rc == 0 and got["changed"] is False, got
    assert got["sha256"] == hashlib.sha256(CONTENT).hexdigest()
    fact = got["ansible_facts"]["sdn_package_wheel"]
    assert fact["sha256"] == got["sha256"] and fact["filename"] == planned.filename
    assert "changed" not in fact
