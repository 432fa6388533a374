"""tools/guest_image.py on an empty cache: two callers at once get one build, a later
caller reuses it, and the parts built from the same inputs are byte-identical to the
ones in the shared cache.  Downloads ~73 MB from the Debian mirror apt uses."""

from __future__ import annotations

import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
TOOL = REPO / "tools/guest_image.py"
SHARED_CACHE = Path("/var/cache/vrstack/guest")


def start(cache: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(TOOL), "--cache", str(cache)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(proc: subprocess.Popen[str]) -> tuple[str, str]:
    out, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err
    return out.strip(), err


def test_cold_build_is_shared_by_concurrent_callers_and_reused(tmp_path: Path) -> None:
    cache = tmp_path / "guest"
    t0 = time.monotonic()
    first, second = start(cache), start(cache)
    (path1, err1), (path2, err2) = finish(first), finish(second)
    cold = time.monotonic() - t0
    assert path1 == path2
    assert (err1 + err2).count("guest_image: built in") == 1, err1 + err2

    t0 = time.monotonic()
    path3, err3 = finish(start(cache))
    warm = time.monotonic() - t0
    assert path3 == path1
    assert "built in" not in err3
    print(f"\ncold build (two callers) {cold:.1f}s, warm {warm:.1f}s")

    image = Path(path1).parent
    assert sorted(p.name for p in image.iterdir()) == [
        "disk.img",
        "initrd.gz",
        "manifest.txt",
        "vmlinuz",
    ]
    assert sorted(p.name for p in cache.iterdir()) == [".lock", image.name]  # no leftovers
    disk = (image / "disk.img").read_bytes()
    assert disk[510:512] == b"\x55\xaa"
    status, start_lba, sectors = disk[446], *struct.unpack_from("<II", disk, 454)
    assert status == 0x80
    assert len(disk) == (start_lba + sectors) * 512
    # The FAT partition's boot sector carries SYSLINUX and the volume label.
    vbr = disk[start_lba * 512 : start_lba * 512 + 512]
    assert b"SYSLINUX" in vbr and b"VRGUEST" in vbr and vbr[510:] == b"\x55\xaa"
    manifest = (image / "manifest.txt").read_text()
    assert "package busybox-static=" in manifest and "module virtio_net" in manifest

    # Same inputs, same key: the kernel and initramfs match the shared cache's copy.
    shared = SHARED_CACHE / image.name
    if shared.is_dir():
        for name in ("vmlinuz", "initrd.gz"):
            assert (shared / name).read_bytes() == (image / name).read_bytes(), name
