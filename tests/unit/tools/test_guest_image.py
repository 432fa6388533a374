"""Unit tests for the pure parts of tools/guest_image.py: cache key, apt output
parsing, module dependencies, the initramfs archive and the MBR."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import guest_image as gi
import pytest

REPO = Path(__file__).resolve().parents[3]


VERSIONS = {"busybox-static": "1:1.35.0-4", "linux-image-6.1.0-57-cloud-amd64": "6.1.192-3"}
FILES = {"init": b"#!/bin/sh\n", "udhcpc.script": b"#!/bin/sh\nexit 0\n"}


# --- cache key ---------------------------------------------------------------


def test_cache_key_is_stable_and_order_independent() -> None:
    key = gi.cache_key(VERSIONS, FILES, 1)
    assert key == gi.cache_key(dict(reversed(VERSIONS.items())), dict(reversed(FILES.items())), 1)
    assert len(key) == 16 and int(key, 16) >= 0


@pytest.mark.parametrize(
    ("versions", "files", "layout"),
    [
        ({**VERSIONS, "busybox-static": "1:1.35.0-5"}, FILES, 1),  # a package upgrade
        ({**VERSIONS, "mtools": "4.0.32-1"}, FILES, 1),  # one more package
        (VERSIONS, {**FILES, "init": b"#!/bin/sh\necho hi\n"}, 1),  # the init script
        (VERSIONS, {**FILES, "syslinux.cfg": b"DEFAULT guest\n"}, 1),  # a new file
        (VERSIONS, FILES, 2),  # the build steps
    ],
)
def test_cache_key_changes_with_any_input(
    versions: dict[str, str], files: dict[str, bytes], layout: int
) -> None:
    assert gi.cache_key(versions, files, layout) != gi.cache_key(VERSIONS, FILES, 1)


# --- apt-cache show ------------------------------------------------------------

SHOW = """\
Package: linux-image-cloud-amd64
Source: linux-signed-amd64 (6.1.192+3)
Version: 6.1.192-3
Depends: linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)
Description-en: Linux for x86-64 cloud (meta-package)
 Depends: not-a-field (= 1)

Package: busybox-static
Version: 1:1.35.0-4+deb12u1+b1

Package: syslinux
Version: 3:6.04~git20190206.bf6db5b4+dfsg1-3+b1
Depends: libc6 (>= 2.2.5), mtools

Package: syslinux-common
Version: 3:6.04~git20190206.bf6db5b4+dfsg1-3

Package: mtools
Version: 4.0.33-1+really4.0.32-1
Depends: libc6 (>= 2.14)
"""


def test_parse_versions_pins_the_kernel_package_named_by_the_meta_package() -> None:
    assert gi.parse_versions(SHOW) == {
        "linux-image-6.1.0-57-cloud-amd64": "6.1.192-3",
        "busybox-static": "1:1.35.0-4+deb12u1+b1",
        "syslinux": "3:6.04~git20190206.bf6db5b4+dfsg1-3+b1",
        "syslinux-common": "3:6.04~git20190206.bf6db5b4+dfsg1-3",
        "mtools": "4.0.33-1+really4.0.32-1",
    }


def test_parse_versions_names_a_missing_package() -> None:
    text = SHOW.replace("Package: mtools", "Package: something-else")
    with pytest.raises(SystemExit, match="apt knows no mtools: run `apt-get update`"):
        gi.parse_versions(text)


def test_parse_versions_refuses_a_meta_package_without_a_pinned_kernel() -> None:
    text = SHOW.replace(
        "linux-image-6.1.0-57-cloud-amd64 (= 6.1.192-3)", "linux-image-6.1.0-57-cloud-amd64"
    )
    with pytest.raises(SystemExit, match=r"linux-image-cloud-amd64 6\.1\.192-3 pins no versioned"):
        gi.parse_versions(text)


# --- kernel modules ------------------------------------------------------------


def elf64(sections: dict[str, bytes]) -> bytes:
    """A minimal little-endian ELF64 file holding the given sections (and .shstrtab)."""
    names = b"\0" + b"".join(n.encode() + b"\0" for n in [*sections, ".shstrtab"])
    bodies = [*sections.values(), names]
    name_offsets = [1]
    for n in sections:
        name_offsets.append(name_offsets[-1] + len(n) + 1)
    data = bytearray(64)
    offsets = []
    for body in bodies:
        offsets.append(len(data))
        data += body
    shoff = len(data)
    data += bytes(64)  # section 0: the null section
    for name_off, offset, body in zip(name_offsets, offsets, bodies, strict=True):
        header = bytearray(64)
        struct.pack_into("<I", header, 0, name_off)
        struct.pack_into("<QQ", header, 0x18, offset, len(body))
        data += header
    data[:6] = b"\x7fELF\x02\x01"
    struct.pack_into("<Q", data, 0x28, shoff)
    struct.pack_into("<HHH", data, 0x3A, 64, len(bodies) + 1, len(bodies))
    return bytes(data)


def test_modinfo_of_an_elf_module() -> None:
    info = b"license=GPL\0depends=virtio,virtio_ring,failover\0name=virtio_net\0alias=a\0alias=b\0"
    module = elf64({".text": b"\x90" * 7, ".modinfo": info})
    assert gi.elf_section(module, ".text") == b"\x90" * 7
    fields = gi.modinfo(gi.elf_section(module, ".modinfo"))
    assert fields["name"] == "virtio_net"
    assert fields["depends"] == "virtio,virtio_ring,failover"
    assert fields["alias"] == "a"


def test_elf_section_rejects_other_files() -> None:
    with pytest.raises(ValueError, match="not a little-endian ELF64"):
        gi.elf_section(b"MZ" + bytes(100), ".modinfo")
    with pytest.raises(ValueError, match=r"no \.modinfo section"):
        gi.elf_section(elf64({".text": b""}), ".modinfo")


DEPENDS = {
    "virtio": [],
    "virtio_ring": [],
    "virtio_pci": ["virtio_ring", "virtio", "virtio_pci_modern_dev"],
    "virtio_pci_modern_dev": [],
    "failover": [],
    "net_failover": ["failover"],
    "virtio_net": ["net_failover", "virtio", "virtio_ring"],
    "e1000": [],
    "unrelated": ["virtio"],
}


def test_load_order_puts_dependencies_first_once() -> None:
    order = gi.load_order(DEPENDS, ["virtio_pci", "virtio_net", "e1000"])
    assert order == [
        "virtio",
        "virtio_pci_modern_dev",
        "virtio_ring",
        "virtio_pci",
        "failover",
        "net_failover",
        "virtio_net",
        "e1000",
    ]
    for index, name in enumerate(order):
        assert set(DEPENDS[name]) <= set(order[:index])


def test_load_order_names_a_missing_module() -> None:
    with pytest.raises(SystemExit, match="kernel module net_failover is not in the kernel"):
        gi.load_order({"virtio_net": ["net_failover"]}, ["virtio_net"])


def test_load_order_refuses_a_loop() -> None:
    with pytest.raises(SystemExit, match="dependency loop through a"):
        gi.load_order({"a": ["b"], "b": ["a"]}, ["a"])


# --- initramfs -----------------------------------------------------------------


def read_newc(archive: bytes) -> list[tuple[str, int, bytes, tuple[int, int]]]:
    """An independent newc reader: (name, mode, data, rdev) up to the trailer."""
    out = []
    pos = 0
    while True:
        assert pos % 4 == 0
        assert archive[pos : pos + 6] == b"070701"
        fields = [int(archive[pos + 6 + 8 * i : pos + 14 + 8 * i], 16) for i in range(13)]
        mode, filesize, rmaj, rmin, namesize = (
            fields[1],
            fields[6],
            fields[9],
            fields[10],
            fields[11],
        )
        name_start = pos + 110
        name = archive[name_start : name_start + namesize - 1].decode()
        assert archive[name_start + namesize - 1] == 0
        data_start = name_start + namesize + (-(name_start + namesize) % 4)
        data = archive[data_start : data_start + filesize]
        pos = data_start + filesize + (-(data_start + filesize) % 4)
        if name == "TRAILER!!!":
            assert pos == len(archive)
            return out
        out.append((name, mode, data, (rmaj, rmin)))


def test_cpio_newc_round_trips_every_kind_of_member() -> None:
    entries = [
        gi.Entry("bin", 0o040755),
        gi.Entry("bin/busybox", 0o100755, b"\x7fELF" + b"x" * 13),
        gi.Entry("bin/sh", 0o120777, b"busybox"),
        gi.Entry("dev/console", 0o020600, rdev=(5, 1)),
        gi.Entry("init", 0o100755, b"#!/bin/sh\n"),
    ]
    archive = gi.cpio_newc(entries)
    assert read_newc(archive) == [(e.path, e.mode, e.data, e.rdev) for e in entries]
    assert archive == gi.cpio_newc(entries)  # no timestamps or owners leak in


def test_initramfs_holds_init_modules_in_order_and_a_console() -> None:
    files = {
        "init": b"#!/bin/sh\n",
        "udhcpc.script": b"#!/bin/sh\n",
        "power-button": b"#!/bin/sh\npoweroff -f\n",
        "syslinux.cfg": b"",
        "probe.cgi": b"#!/bin/sh\necho probe\n",
    }
    archive = gzip.decompress(gi.initramfs(b"BUSYBOX", files, [("b", b"B"), ("a", b"A")]))
    members = {name: (mode, data, rdev) for name, mode, data, rdev in read_newc(archive)}
    assert members["init"] == (0o100755, b"#!/bin/sh\n", (0, 0))
    assert members["bin/sh"][1] == b"busybox"
    assert members["dev/console"] == (0o020600, b"", (5, 1))
    assert members["etc/vrstack-modules"][1] == b"b\na\n"
    assert members["etc/acpi/PWRF/00000080"] == (0o100755, files["power-button"], (0, 0))
    assert members["lib/modules/a.ko"][1] == b"A"
    # busybox httpd runs CGI programs from /www/cgi-bin: executable, as given.
    assert members["www/cgi-bin/probe"] == (0o100755, files["probe.cgi"], (0, 0))


# --- disk ------------------------------------------------------------------------


def test_mbr_has_boot_code_one_active_partition_and_signature() -> None:
    code = bytes(range(256)) * 2
    sector = gi.mbr(code, 2048, 16384, 0x0E, 0x12345678)
    assert len(sector) == 512
    assert sector[:440] == code[:440]
    assert struct.unpack_from("<I", sector, 440)[0] == 0x12345678
    status, ptype, start, count = sector[446], sector[450], *struct.unpack_from("<II", sector, 454)
    assert (status, ptype, start, count) == (0x80, 0x0E, 2048, 16384)
    assert sector[462:510] == bytes(48)  # the other three entries are empty
    assert sector[510:] == b"\x55\xaa"
