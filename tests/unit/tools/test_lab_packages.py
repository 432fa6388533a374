"""Unit tests for the logic of tools/lab_packages.py: list parsing, cache keys,
the flat repository's index and publishing a cache in place."""

from __future__ import annotations

import fcntl
import gzip
import hashlib
import subprocess
from pathlib import Path

import lab_packages as lp
import pytest

REPO = Path(__file__).resolve().parents[3]


def test_debs_list_comments_blanks_and_duplicates() -> None:
    text = "# header\n\nmariadb-server   # database role\nmemcached\n  gcc\nmemcached\n"
    assert lp.parse_debs(text, "x.txt") == ["gcc", "mariadb-server", "memcached"]


@pytest.mark.parametrize(
    ("line", "lineno"),
    [("MariaDB-Server", 2), ("gcc=4:12.2.0-3", 2), ("two words", 2), ("x", 2)],
)
def test_debs_list_bad_line_names_file_and_line(line: str, lineno: int) -> None:
    with pytest.raises(lp.PackagesError, match=rf"^lab-debs\.txt:{lineno}: '{line}'"):
        lp.parse_debs(f"# ok\n{line}\n", "lab-debs.txt")


def test_the_repository_lists_parse() -> None:
    debs = lp.parse_debs((REPO / "requirements/lab-debs.txt").read_text(), "lab-debs.txt")
    assert {"mariadb-server", "rabbitmq-server", "memcached", "etcd-server"} <= set(debs)
    pins = lp.check_pinned((REPO / "requirements/lab-wheels.txt").read_text(), "lab-wheels.txt")
    assert any(p.startswith("aiohttp==") for p in pins)
    assert any(p.startswith("PyYAML==") for p in pins)


def test_wheel_list_must_be_pinned() -> None:
    assert lp.check_pinned("aiohttp==3.14.5  # web\n\nPyYAML==6.0.4\n", "w.txt") == [
        "aiohttp==3.14.5",
        "PyYAML==6.0.4",
    ]
    with pytest.raises(lp.PackagesError, match=r"^w\.txt:3: 'yarl>=1' is not pinned"):
        lp.check_pinned("aiohttp==3.14.5\n# c\nyarl>=1\n", "w.txt")


def test_debs_key_follows_packages_and_rootfs_not_order() -> None:
    base = lp.debs_key(["gcc", "make"], "rootfs-a")
    assert lp.debs_key(["make", "gcc"], "rootfs-a") == base
    assert lp.debs_key(["gcc", "make", "memcached"], "rootfs-a") != base
    assert lp.debs_key(["gcc", "make"], "rootfs-b") != base


def test_wheels_key_follows_contents_names_and_python() -> None:
    files = [("lab-wheels.txt", b"aiohttp==3.14.5\n"), ("openstack/a.txt", b"nova\n")]
    base = lp.wheels_key(files, "cp311-x86_64")
    assert lp.wheels_key(list(reversed(files)), "cp311-x86_64") == base
    assert lp.wheels_key(files[:1], "cp311-x86_64") != base
    assert lp.wheels_key([files[0], ("openstack/a.txt", b"nova==34\n")], "cp311-x86_64") != base
    assert lp.wheels_key([files[0], ("openstack/b.txt", b"nova\n")], "cp311-x86_64") != base
    assert lp.wheels_key(files, "cp312-x86_64") != base


def test_cache_key_parts_do_not_run_together() -> None:
    assert lp.cache_key("ab", "c") != lp.cache_key("a", "bc")


def test_wheel_inputs_pass_constraints_as_constraints(tmp_path: Path) -> None:
    wheels = tmp_path / "lab-wheels.txt"
    wheels.write_text("PyYAML==6.0.4\n")
    os_dir = tmp_path / "openstack"
    os_dir.mkdir()
    (os_dir / "services.txt").write_text("nova\n")
    (os_dir / "constraints.txt").write_text("nova===34.0.0\n")
    (os_dir / "notes.md").write_text("not a list\n")
    assert lp.wheel_inputs(wheels, os_dir) == [
        ("lab-wheels.txt", wheels, False),
        ("openstack/constraints.txt", os_dir / "constraints.txt", True),
        ("openstack/services.txt", os_dir / "services.txt", False),
    ]
    assert lp.wheel_inputs(wheels, tmp_path / "absent") == [("lab-wheels.txt", wheels, False)]


def test_packages_stanza_and_release() -> None:
    data = b"not really a deb"
    stanza = lp.packages_stanza("Package: foo\nVersion: 1.0\n\n", "foo_1.0_all.deb", data)
    assert stanza.splitlines() == [
        "Package: foo",
        "Version: 1.0",
        "Filename: ./foo_1.0_all.deb",
        f"Size: {len(data)}",
        f"MD5sum: {hashlib.md5(data).hexdigest()}",
        f"SHA256: {hashlib.sha256(data).hexdigest()}",
    ]
    release = lp.release_text([("Packages", b"abc")], "Mon, 30 Nov 2026 10:00:00 GMT")
    assert f" {hashlib.sha256(b'abc').hexdigest()} 3 Packages" in release.splitlines()


def _make_deb(tmp: Path, name: str, version: str) -> Path:
    """A real (tiny) .deb built with dpkg-deb, which every Debian system has."""
    root = tmp / f"{name}-src"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        f"Package: {name}\nVersion: {version}\nArchitecture: all\n"
        "Maintainer: vrstack <lab@example.invalid>\nDescription: test package\n"
    )
    deb = tmp / "repo" / f"{name}_{version}_all.deb"
    deb.parent.mkdir(exist_ok=True)
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-b", str(root), str(deb)],
        check=True,
        capture_output=True,
    )
    return deb


def test_write_index_of_real_debs(tmp_path: Path) -> None:
    first = _make_deb(tmp_path, "vrs-one", "1.0")
    _make_deb(tmp_path, "vrs-two", "2.0")
    lp.write_index(first.parent)
    packages = (first.parent / "Packages").read_bytes()
    assert gzip.decompress((first.parent / "Packages.gz").read_bytes()) == packages
    stanzas = packages.decode().split("\n\n")
    assert [s.splitlines()[0] for s in stanzas] == ["Package: vrs-one", "Package: vrs-two"]
    assert f"SHA256: {hashlib.sha256(first.read_bytes()).hexdigest()}" in stanzas[0]
    release = (first.parent / "Release").read_text()
    assert f"{hashlib.sha256(packages).hexdigest()} {len(packages)} Packages" in release


def test_publish_replaces_in_place_and_drops_stale_files(tmp_path: Path) -> None:
    dest = tmp_path / "debs"
    dest.mkdir()
    (dest / "old_1_all.deb").write_text("old")
    (dest / "keep_1_all.deb").write_text("old content")
    inode = dest.stat().st_ino
    built = tmp_path / "built"
    built.mkdir()
    (built / "keep_1_all.deb").write_text("new content")
    (built / "new_1_all.deb").write_text("new")
    (built / "Packages").write_text("index")
    lp.publish(built, dest, last=("Packages",))
    assert dest.stat().st_ino == inode  # the directory hosts bind-mount stays the same
    assert sorted(p.name for p in dest.iterdir()) == ["Packages", "keep_1_all.deb", "new_1_all.deb"]
    assert (dest / "keep_1_all.deb").read_text() == "new content"


def test_is_current_needs_matching_key_and_directory(tmp_path: Path) -> None:
    assert not lp.is_current(tmp_path, "debs", "k1")
    lp.stamp(tmp_path, "debs").write_text("k1\n")
    assert not lp.is_current(tmp_path, "debs", "k1")  # no directory
    (tmp_path / "debs").mkdir()
    assert lp.is_current(tmp_path, "debs", "k1")
    assert not lp.is_current(tmp_path, "debs", "k2")


def test_cache_lock_waits_a_bounded_time(tmp_path: Path) -> None:

    with open(tmp_path / "packages.lock", "w") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        with (
            pytest.raises(lp.PackagesError, match="still held after 1s"),
            lp.cache_lock(tmp_path, limit=1.0),
        ):
            pass
    with lp.cache_lock(tmp_path, limit=1.0):  # free again: taken at once
        pass
