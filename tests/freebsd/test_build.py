"""C for FreeBSD, built here with zig's FreeBSD target (headers from the ziglang
wheel): the vrouter KLD compile check (files/vrouter-src/freebsd/check.sh, which also
fetches and caches zig), and the datapath's userland C cross-built and linked as
FreeBSD executables (not run: there is no FreeBSD kernel here)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import harness
import pytest

SRC = harness.REPO / "files" / "vrouter-src"
CHECK = SRC / "freebsd" / "check.sh"
WARN = ["-Wall", "-Wextra", "-Werror"]


def zig() -> Path:
    """The zig that check.sh fetched (its version and cache directory are set there)."""
    text = CHECK.read_text()
    version = re.search(r"^ZIG_VERSION=(\S+)$", text, re.M)
    cache = re.search(r"^cache=(\S+)$", text, re.M)
    assert version and cache, f"{CHECK}: ZIG_VERSION= or cache= line not found"
    return Path(cache.group(1)) / f"ziglang-{version.group(1)}" / "zig"


@pytest.fixture(scope="module")
def kld_check() -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", str(CHECK)],
        env=dict(os.environ, PYTHON=sys.executable),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_kld_compiles_as_freebsd_kernel_code(kld_check: subprocess.CompletedProcess[str]) -> None:
    assert kld_check.returncode == 0, kld_check.stdout + kld_check.stderr
    assert "compile as x86_64-freebsd kernel code" in kld_check.stdout
    symbols = re.search(r"glue uses (\d+) kernel symbols", kld_check.stdout)
    assert symbols and int(symbols.group(1)) > 0, kld_check.stdout


def cross_build(
    sources: list[Path], out: Path, extra: list[str]
) -> subprocess.CompletedProcess[str]:
    cmd = [str(zig()), "cc", "-target", "x86_64-freebsd", "-std=gnu11", "-O1", *WARN]
    cmd += ["-I", str(SRC / "include"), "-I", str(SRC / "dp-core"), *extra]
    cmd += [*map(str, sources), *map(str, sorted((SRC / "dp-core").glob("*.c"))), "-o", str(out)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, check=False)


def assert_freebsd_executable(path: Path) -> None:
    """An ELF executable for FreeBSD's run-time linker, with FreeBSD's ABI note."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", f"{path}: not ELF"
    assert int.from_bytes(data[16:18], "little") == 2, f"{path}: not an executable"
    assert b"/libexec/ld-elf.so.1\0" in data, f"{path}: not for FreeBSD's ld-elf.so.1"
    assert b"FreeBSD\0" in data, f"{path}: no FreeBSD ABI note"


def test_datapath_bench_links_for_freebsd(
    kld_check: subprocess.CompletedProcess[str], tmp_path: Path
) -> None:
    """dp-core and the microbenchmark as a FreeBSD program (libc, no Linux headers)."""
    assert kld_check.returncode == 0, "zig is fetched by check.sh"
    res = cross_build([SRC / "bench" / "vrbench.c"], tmp_path / "vrbench", [])
    assert res.returncode == 0, res.stderr
    assert_freebsd_executable(tmp_path / "vrbench")


# tests/support_os.c and test_vectors.c call inet_pton(AF_INET, ...) with only
# <arpa/inet.h>: glibc's pulls in AF_INET, FreeBSD's does not (POSIX puts it in
# <sys/socket.h>). Until they include it themselves, the FreeBSD build adds it.
TEST_INCLUDES = ["-include", "sys/socket.h"]


@pytest.mark.parametrize("test", [p.stem for p in sorted((SRC / "tests").glob("test_*.c"))])
def test_datapath_unit_tests_link_for_freebsd(
    kld_check: subprocess.CompletedProcess[str], tmp_path: Path, test: str
) -> None:
    """Each unit test as the Makefile builds it (test, support files, vrouterd's
    offload code, dp-core), linked as a FreeBSD program."""
    assert kld_check.returncode == 0, "zig is fetched by check.sh"
    sources = [
        SRC / "tests" / f"{test}.c",
        *sorted((SRC / "tests").glob("support_*.c")),
        SRC / "host" / "offload.c",
    ]
    res = cross_build(sources, tmp_path / test, ["-I", str(SRC / "tests"), *TEST_INCLUDES])
    assert res.returncode == 0, res.stderr
    assert_freebsd_executable(tmp_path / test)
