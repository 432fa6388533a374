"""The Nova test guest: a Debian kernel and a busybox initramfs on a small bootable disk.

Everything comes from Debian packages fetched with `apt-get download` (no other
downloads): the kernel and its virtio modules from the package that
`linux-image-cloud-amd64` points at, busybox from `busybox-static`, and the boot
loader (SYSLINUX on a FAT partition behind its MBR) from `syslinux`,
`syslinux-common` and `mtools`, which run straight from the unpacked packages,
so the host needs nothing installed but apt.  The guest's behaviour lives in
files/guest/ (init, udhcpc.script, power-button, syslinux.cfg, probe.cgi).

The result is cached in /var/cache/vrstack/guest/<key>/ (key = hash of the
package versions, the files in files/guest/ and LAYOUT): `disk.img` (raw, MBR,
what Glance and Nova get), plus `vmlinuz` and `initrd.gz` for direct
`-kernel`/`-initrd` boots and `manifest.txt`.  A lock lets concurrent callers
wait for one build.

    python tools/guest_image.py [build] [--cache DIR]   build or reuse; prints disk.img's path
    python tools/guest_image.py key [--cache DIR]       print the cache key only
"""

from __future__ import annotations

import argparse
import fcntl
import gzip
import hashlib
import os
import shutil
import struct
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
GUEST_FILES = REPO / "files" / "guest"
CACHE = Path("/var/cache/vrstack/guest")
# Debian's kernel for virtual machines: LZ4-compressed (the generic kernel is xz,
# whose decompression alone takes ~25 s under TCG) with the virtio drivers.  It has
# no e1000, so the guest needs Nova's default NIC model, virtio.
KERNEL_META = "linux-image-cloud-amd64"
TOOL_PACKAGES: tuple[str, ...] = ("busybox-static", "syslinux", "syslinux-common", "mtools")
# The driver for the NIC Nova's libvirt driver gives a guest by default, and the
# ACPI power button (with evdev, for acpid) that a clean Nova stop presses.
GUEST_MODULES: tuple[str, ...] = ("virtio_pci", "virtio_net", "button", "evdev")
# Bump when the way the image is put together changes.
LAYOUT = 1
SECTOR = 512
PART_START = 2048  # first partition at 1 MiB, as partitioning tools do
PART_TYPE_FAT16_LBA = 0x0E


def log(msg: str) -> None:
    print(f"guest_image: {msg}", file=sys.stderr, flush=True)


def fail(msg: str) -> SystemExit:
    return SystemExit(f"guest_image: {msg}")


def run(args: list[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    proc = subprocess.run(
        args, cwd=cwd, env=env, text=True, capture_output=True, timeout=600, check=False
    )
    if proc.returncode != 0:
        raise fail(f"{' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


# --- pure logic (unit-tested) ------------------------------------------------


def cache_key(versions: Mapping[str, str], files: Mapping[str, bytes], layout: int) -> str:
    """Same packages, same guest files, same layout -> same key."""
    h = hashlib.sha256(f"layout {layout}\n".encode())
    for name in sorted(versions):
        h.update(f"package {name}={versions[name]}\n".encode())
    for name in sorted(files):
        h.update(f"file {name} {hashlib.sha256(files[name]).hexdigest()}\n".encode())
    return h.hexdigest()[:16]


def parse_versions(show_output: str) -> dict[str, str]:
    """Package -> version from `apt-cache show --no-all-versions` of the image's
    packages, with the versioned kernel package that linux-image-amd64 pins
    (its Depends names it with `(= VERSION)`) in place of the meta package."""
    records: dict[str, dict[str, str]] = {}
    for block in show_output.split("\n\n"):
        fields = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith(" "):
                fields[key] = value.strip()
        if "Package" in fields:
            records.setdefault(fields["Package"], fields)
    versions: dict[str, str] = {}
    for name in TOOL_PACKAGES:
        if name not in records:
            raise fail(f"apt knows no {name}: run `apt-get update` first")
        versions[name] = records[name]["Version"]
    meta = records.get(KERNEL_META)
    if meta is None:
        raise fail(f"apt knows no {KERNEL_META}: run `apt-get update` first")
    for dep in meta.get("Depends", "").split(","):
        name, _, pin = dep.strip().partition(" (= ")
        if name.startswith("linux-image-") and pin.endswith(")"):
            versions[name] = pin[:-1]
            return versions
    raise fail(f"{KERNEL_META} {meta['Version']} pins no versioned linux-image package")


def elf_section(data: bytes, wanted: str) -> bytes:
    """The contents of one section of a little-endian ELF64 file (a kernel module)."""
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        raise ValueError("not a little-endian ELF64 file")
    shoff = struct.unpack_from("<Q", data, 0x28)[0]
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        name = struct.unpack_from("<I", data, base)[0]
        offset, size = struct.unpack_from("<QQ", data, base + 0x18)
        return name, offset, size

    _, str_off, str_size = header(shstrndx)
    names = data[str_off : str_off + str_size]
    for index in range(shnum):
        name_off, offset, size = header(index)
        end = names.find(b"\0", name_off)
        if names[name_off:end].decode() == wanted:
            return data[offset : offset + size]
    raise ValueError(f"no {wanted} section")


def modinfo(section: bytes) -> dict[str, str]:
    """key=value strings of a module's .modinfo section (first value of each key)."""
    fields: dict[str, str] = {}
    for raw in section.split(b"\0"):
        key, sep, value = raw.decode(errors="replace").partition("=")
        if sep:
            fields.setdefault(key, value)
    return fields


def load_order(depends: Mapping[str, Iterable[str]], wanted: Iterable[str]) -> list[str]:
    """The wanted modules and everything they need, each after its dependencies."""
    order: list[str] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in order:
            return
        if name not in depends:
            raise fail(f"kernel module {name} is not in the kernel package")
        if name in visiting:
            raise fail(f"kernel module dependency loop through {name}")
        visiting.add(name)
        for dep in sorted(depends[name]):
            visit(dep)
        visiting.discard(name)
        order.append(name)

    for name in wanted:
        visit(name)
    return order


@dataclass(frozen=True)
class Entry:
    """One initramfs member: a directory, regular file, symlink or device node."""

    path: str
    mode: int  # type and permission bits, as in st_mode
    data: bytes = b""  # file contents, or the symlink target
    rdev: tuple[int, int] = (0, 0)


def cpio_newc(entries: Iterable[Entry]) -> bytes:
    """A cpio archive in the "newc" format the kernel unpacks as initramfs.

    Fixed owner (root) and mtime (0) so the same inputs give the same bytes."""
    out = bytearray()

    def member(ino: int, entry: Entry) -> None:
        name = entry.path.encode() + b"\0"
        nlink = 2 if entry.mode & 0o170000 == 0o040000 else 1
        fields = (ino, entry.mode, 0, 0, nlink, 0, len(entry.data), 0, 0, *entry.rdev)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.extend(b"%08X%08X" % (len(name), 0))
        out.extend(name)
        out.extend(b"\0" * (-len(out) % 4))
        out.extend(entry.data)
        out.extend(b"\0" * (-len(out) % 4))

    ino = 0
    for ino, entry in enumerate(entries, start=1):
        member(ino, entry)
    member(ino + 1, Entry("TRAILER!!!", 0))
    return bytes(out)


def mbr(boot_code: bytes, start: int, sectors: int, part_type: int, disk_id: int) -> bytes:
    """Sector 0: boot code, one active primary partition (LBA only), signature."""
    sector = bytearray(SECTOR)
    sector[: len(boot_code[:440])] = boot_code[:440]
    struct.pack_into("<I", sector, 440, disk_id)
    chs_beyond = b"\xfe\xff\xff"  # "use LBA": the usual filler past 8 GiB
    entry = struct.pack("<B3sB3sII", 0x80, chs_beyond, part_type, chs_beyond, start, sectors)
    sector[446:462] = entry
    sector[510:512] = b"\x55\xaa"
    return bytes(sector)


# --- inputs from apt ---------------------------------------------------------


def package_versions() -> dict[str, str]:
    """Candidate versions of the packages the image is made of (one apt call: with
    no binary package cache configured each call costs seconds)."""
    names = [KERNEL_META, *TOOL_PACKAGES]
    return parse_versions(run(["apt-cache", "show", "--no-all-versions", *names]))


def guest_files() -> dict[str, bytes]:
    files = {p.name: p.read_bytes() for p in sorted(GUEST_FILES.iterdir()) if p.is_file()}
    for needed in ("init", "udhcpc.script", "power-button", "syslinux.cfg", "probe.cgi"):
        if needed not in files:
            raise fail(f"{GUEST_FILES / needed} is missing")
    return files


def download(versions: Mapping[str, str], into: Path) -> dict[str, Path]:
    into.mkdir(parents=True, exist_ok=True)
    run(["apt-get", "download", *(f"{n}={v}" for n, v in sorted(versions.items()))], cwd=into)
    debs: dict[str, Path] = {}
    for deb in into.glob("*.deb"):
        debs[deb.name.split("_", 1)[0]] = deb
    missing = sorted(set(versions) - set(debs))
    if missing:
        raise fail(f"apt-get download gave no .deb for {', '.join(missing)} in {into}")
    return debs


def kernel_parts(deb: Path) -> tuple[bytes, dict[str, list[str]], dict[str, bytes]]:
    """vmlinuz, every module's dependencies, and every module's bytes, in one pass
    over the package (unpacking all 400 MB of modules to disk is slower)."""
    vmlinuz = b""
    depends: dict[str, list[str]] = {}
    blobs: dict[str, bytes] = {}
    with subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(deb)], stdout=subprocess.PIPE) as p:
        assert p.stdout is not None
        with tarfile.open(fileobj=p.stdout, mode="r|") as tar:
            for member in tar:
                if not member.isfile():
                    continue
                is_kernel = member.name.startswith("./boot/vmlinuz-")
                if not is_kernel and not member.name.endswith(".ko"):
                    continue
                handle = tar.extractfile(member)
                assert handle is not None
                data = handle.read()
                if is_kernel:
                    vmlinuz = data
                    continue
                info = modinfo(elf_section(data, ".modinfo"))
                name = info.get("name") or Path(member.name).stem.replace("-", "_")
                depends[name] = [d for d in info.get("depends", "").split(",") if d]
                blobs[name] = data
    if p.returncode != 0 or not vmlinuz:
        raise fail(f"{deb} holds no /boot/vmlinuz-* (dpkg-deb exit {p.returncode})")
    return vmlinuz, depends, blobs


# --- assembly ----------------------------------------------------------------


def initramfs(
    busybox: bytes, files: Mapping[str, bytes], modules: list[tuple[str, bytes]]
) -> bytes:
    dirs = ("bin", "sbin", "usr", "usr/bin", "usr/sbin", "etc", "etc/acpi", "etc/acpi/PWRF")
    dirs += ("lib", "lib/modules")
    dirs += ("dev", "proc", "sys", "run", "tmp", "www", "www/cgi-bin", "root")
    entries = [Entry(d, 0o040755) for d in dirs]
    entries += [
        # The kernel opens /dev/console for init before anything is mounted.
        Entry("dev/console", 0o020600, rdev=(5, 1)),
        Entry("bin/busybox", 0o100755, busybox),
        Entry("bin/sh", 0o120777, b"busybox"),
        Entry("init", 0o100755, files["init"]),
        Entry("etc/udhcpc.script", 0o100755, files["udhcpc.script"]),
        Entry("etc/acpi/PWRF/00000080", 0o100755, files["power-button"]),
        Entry("www/cgi-bin/probe", 0o100755, files["probe.cgi"]),
        Entry("etc/vrstack-modules", 0o100644, "".join(f"{n}\n" for n, _ in modules).encode()),
    ]
    entries += [Entry(f"lib/modules/{name}.ko", 0o100644, data) for name, data in modules]
    return gzip.compress(cpio_newc(entries), compresslevel=9, mtime=0)


def boot_disk(tools: Path, boot_files: Mapping[str, bytes], tmp: Path, disk_id: int) -> bytes:
    """SYSLINUX on a FAT partition holding the kernel, initramfs and config."""
    env = {
        "PATH": f"{tools / 'usr/bin'}:{os.environ.get('PATH', '/usr/bin:/bin')}",
        "MTOOLSRC": "/dev/null",  # ignore any host mtools config
        "MTOOLS_SKIP_CHECK": "1",
    }
    payload = sum(len(b) for b in boot_files.values())
    mib = payload // (1 << 20) + 4  # room for FAT tables and ldlinux
    sectors = mib * (1 << 20) // SECTOR
    fat = tmp / "fat.img"
    bin_dir = tools / "usr/bin"
    # hidden sectors = partition start, so the FAT knows where it sits on the disk
    run([str(bin_dir / "mformat"), "-i", str(fat), "-C", "-T", str(sectors), "-h", "64",
         "-s", "32", "-H", str(PART_START), "-v", "VRGUEST", "::"], env=env)  # fmt: skip
    run([str(bin_dir / "syslinux"), "--install", str(fat)], env=env)
    for name, data in boot_files.items():
        (tmp / name).write_bytes(data)
        run([str(bin_dir / "mcopy"), "-i", str(fat), str(tmp / name), f"::/{name}"], env=env)
    boot_code = (tools / "usr/lib/syslinux/mbr/mbr.bin").read_bytes()
    head = mbr(boot_code, PART_START, sectors, PART_TYPE_FAT16_LBA, disk_id)
    return head + bytes((PART_START - 1) * SECTOR) + fat.read_bytes()


def build(cache: Path, versions: Mapping[str, str], files: Mapping[str, bytes], key: str) -> Path:
    final = cache / key
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{key}-", dir=cache))
    try:
        start = time.monotonic()
        log(f"downloading {', '.join(f'{n}={v}' for n, v in sorted(versions.items()))}")
        debs = download(versions, tmp / "debs")
        tools = tmp / "tools"
        for name in TOOL_PACKAGES:
            run(["dpkg-deb", "-x", str(debs[name]), str(tools)])
        kernel_pkg = next(n for n in versions if n.startswith("linux-image-"))
        vmlinuz, depends, blobs = kernel_parts(debs[kernel_pkg])
        order = load_order(depends, GUEST_MODULES)
        busybox = (tools / "bin/busybox").read_bytes()
        initrd = initramfs(busybox, files, [(n, blobs[n]) for n in order])
        del blobs
        boot_files = {
            "vmlinuz": vmlinuz,
            "initrd.gz": initrd,
            "syslinux.cfg": files["syslinux.cfg"],
        }
        disk = boot_disk(tools, boot_files, tmp, int(key[:8], 16))
        out = tmp / "out"
        out.mkdir()
        (out / "vmlinuz").write_bytes(vmlinuz)
        (out / "initrd.gz").write_bytes(initrd)
        (out / "disk.img").write_bytes(disk)
        manifest = [f"key {key}", f"layout {LAYOUT}"]
        manifest += [f"package {n}={v}" for n, v in sorted(versions.items())]
        manifest += [
            f"file {n} sha256={hashlib.sha256(d).hexdigest()}" for n, d in sorted(files.items())
        ]
        manifest += [f"module {n}" for n in order]
        manifest += [f"size {n} {len(d)}" for n, d in (("disk.img", disk), *boot_files.items())]
        (out / "manifest.txt").write_text("\n".join(manifest) + "\n")
        os.rename(out, final)
        log(f"built in {time.monotonic() - start:.1f}s: {final} (disk {len(disk) >> 20} MiB)")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def ensure(cache: Path = CACHE) -> Path:
    """The cached image directory for the current inputs, built if missing."""
    versions = package_versions()
    files = guest_files()
    key = cache_key(versions, files, LAYOUT)
    final = cache / key
    if (final / "disk.img").exists():
        return final
    cache.mkdir(parents=True, exist_ok=True)
    # Callers on a cold cache: one builds, the others wait and reuse its result.
    with (cache / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "disk.img").exists():
            return final
        # Holding the lock, any temporary directory is a killed build's leftover.
        for stale in cache.glob(".tmp-*"):
            shutil.rmtree(stale, ignore_errors=True)
        return build(cache, versions, files, key)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("command", nargs="?", default="build", choices=("build", "key"))
    parser.add_argument("--cache", type=Path, default=CACHE, help=f"default {CACHE}")
    args = parser.parse_args(argv)
    if args.command == "key":
        print(cache_key(package_versions(), guest_files(), LAYOUT))
        return 0
    print(ensure(args.cache) / "disk.img")
    return 0


if __name__ == "__main__":
    sys.exit(main())
