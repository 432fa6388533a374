"""The guest image boots from its disk alone under qemu TCG, takes a DHCP lease from
dnsmasq, prints it on the console, answers ping and serves its name over HTTP.

Needs root (network namespace, tap, qemu, dnsmasq).  All traffic stays inside a
namespace `vrg-<pid>` made here, on 198.18.200.0/24: a bridge with dnsmasq on it
and the tap qemu uses.  Timings go to stdout (`pytest -s`) and to the junit
properties (boot_to_address_s, build_s)."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import guest_image
import pytest

REPO = Path(__file__).resolve().parents[3]
SUBNET = "198.18.200"
GATEWAY = f"{SUBNET}.1"
GUEST_MAC = "52:54:00:c8:00:02"
GUEST_NAME = "vrg-guest"
GUEST_MTU = 1400  # what an overlay would hand out
BOOT_TIMEOUT = 90.0
CONSOLE_LINE = re.compile(rb"vrstack-guest: eth0 (198\.18\.200\.\d+)/(\d+)")

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (netns, tap, qemu)")


def sh(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, capture_output=True, timeout=timeout)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


@pytest.fixture(scope="module")
def image() -> Path:
    for tool in ("qemu-system-x86_64", "qemu-img", "dnsmasq", "ping", "ip"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed (requirements/debian-packages.txt)")
    start = time.monotonic()
    path = guest_image.ensure() / "disk.img"
    print(f"\nguest image {path}: ready in {time.monotonic() - start:.1f}s")
    return path


@dataclass
class Lab:
    ns: str
    tap: str
    leases: Path
    console: Path
    qmp: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def exec(self, *args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.ns, *args],
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    """A namespace with a bridge (198.18.200.1/24), a tap on it and dnsmasq serving DHCP."""
    ns = f"vrg-{os.getpid()}"
    lab = Lab(ns, "vrg-tap0", *(tmp_path / n for n in ("dnsmasq.leases", "console.log", "qmp")))
    sh("ip", "netns", "add", ns)
    try:
        for cmd in (
            "link set lo up",
            "link add br0 type bridge",
            f"addr add {GATEWAY}/24 dev br0",
            "link set br0 up",
            f"tuntap add dev {lab.tap} mode tap",
            f"link set {lab.tap} master br0",
            f"link set {lab.tap} up",
        ):
            sh("ip", "-n", ns, *cmd.split())
        # fmt: off
        dnsmasq_cmd = [
            "ip", "netns", "exec", ns, "dnsmasq", "--keep-in-foreground",
            "--conf-file=/dev/null", "--port=0", "--interface=br0", "--bind-interfaces",
            f"--dhcp-range={SUBNET}.100,{SUBNET}.199,255.255.255.0,1h",
            f"--dhcp-host={GUEST_MAC},{GUEST_NAME}", f"--dhcp-option=option:mtu,{GUEST_MTU}",
            f"--dhcp-leasefile={lab.leases}",
            # --no-ping: time the guest, not dnsmasq's "address in use?" probe
            "--dhcp-authoritative", "--no-ping", "--pid-file", "--log-dhcp",
            f"--log-facility={tmp_path / 'dnsmasq.log'}",
        ]
        # fmt: on
        dnsmasq = subprocess.Popen(
            dnsmasq_cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        lab.procs.append(dnsmasq)
        yield lab
    finally:
        for proc in reversed(lab.procs):
            stop(proc)
        subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def boot(lab: Lab, disk: Path) -> subprocess.Popen[bytes]:
    """The disk alone under SeaBIOS, as Nova's libvirt driver runs it by default: a
    qcow2 overlay grown to the flavor's 1 GiB root disk on a virtio bus, a virtio NIC."""
    overlay = lab.console.with_name("root.qcow2")
    sh("qemu-img", "create", "-q", "-f", "qcow2", "-b", str(disk), "-F", "raw", str(overlay), "1G")
    # fmt: off
    cmd = [
        "ip", "netns", "exec", lab.ns, "qemu-system-x86_64", "-accel", "tcg", "-m", "192",
        "-display", "none", "-no-reboot", "-monitor", "none",
        "-qmp", f"unix:{lab.qmp},server=on,wait=off",
        "-drive", f"file={overlay},format=qcow2,if=virtio",
        "-netdev", f"tap,id=n0,ifname={lab.tap},script=no,downscript=no",
        "-device", f"virtio-net-pci,netdev=n0,mac={GUEST_MAC}",
        "-serial", f"file:{lab.console}",
    ]
    # fmt: on
    qemu = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    lab.procs.append(qemu)
    return qemu


def qmp(path: Path, command: str) -> None:
    """One QMP command to qemu (after the capabilities handshake)."""
    with socket.socket(socket.AF_UNIX) as sock:
        sock.settimeout(10)
        sock.connect(str(path))
        stream = sock.makefile("rwb")
        json.loads(stream.readline())  # greeting
        for execute in ("qmp_capabilities", command):
            stream.write(json.dumps({"execute": execute}).encode() + b"\n")
            stream.flush()
            for _line in range(20):  # asynchronous events may come before the answer
                answer = json.loads(stream.readline())
                if "error" in answer:
                    pytest.fail(f"qmp {execute}: {answer['error']}")
                if "return" in answer:
                    break


def wait_for_address(lab: Lab, qemu: subprocess.Popen[bytes]) -> tuple[str, int]:
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        text = lab.console.read_bytes() if lab.console.exists() else b""
        found = CONSOLE_LINE.search(text)
        if found:
            return found.group(1).decode(), int(found.group(2))
        if qemu.poll() is not None:
            err = qemu.stderr.read().decode() if qemu.stderr else ""
            pytest.fail(f"qemu exited {qemu.returncode}: {err}\nconsole:\n{text[-2000:]!r}")
        time.sleep(0.5)
    tail = lab.console.read_bytes()[-2000:] if lab.console.exists() else b""
    pytest.fail(f"no address line on the console in {BOOT_TIMEOUT:.0f}s; console tail:\n{tail!r}")


def test_guest_boots_takes_lease_answers_ping_and_http(
    image: Path, lab: Lab, record_property: pytest.RecordProperty
) -> None:
    start = time.monotonic()
    qemu = boot(lab, image)
    address, prefix = wait_for_address(lab, qemu)
    boot_s = time.monotonic() - start
    record_property("boot_to_address_s", f"{boot_s:.1f}")
    print(f"\naddress {address}/{prefix} on the console after {boot_s:.1f}s")
    assert prefix == 24

    # dnsmasq's lease for the guest's MAC is the address the guest printed.
    leases = [line.split() for line in lab.leases.read_text().splitlines()]
    ours = [fields for fields in leases if fields[1] == GUEST_MAC]
    assert len(ours) == 1, f"leases: {leases}"
    assert ours[0][2] == address
    assert ours[0][3] == GUEST_NAME

    ping = lab.exec("ping", "-c", "3", "-i", "0.5", "-W", "3", address)
    assert ping.returncode == 0, ping.stdout + ping.stderr
    assert " 0% packet loss" in ping.stdout

    fetch = lab.exec(
        sys.executable,
        "-c",
        "import sys, urllib.request;"
        "print(urllib.request.urlopen(sys.argv[1], timeout=10).read().decode(), end='')",
        f"http://{address}/",
    )
    assert fetch.returncode == 0, fetch.stderr
    # The name, address and MTU dnsmasq handed out.
    assert fetch.stdout.strip() == f"vrstack-guest {GUEST_NAME} {address}/24 mtu {GUEST_MTU}"

    # The probe CGI: the guest itself pings and fetches, as between two servers.
    def probe(query: str) -> str:
        out = lab.exec(
            sys.executable,
            "-c",
            "import sys, urllib.request;"
            "print(urllib.request.urlopen(sys.argv[1], timeout=30).read().decode(), end='')",
            f"http://{address}/cgi-bin/probe?{query}",
        )
        assert out.returncode == 0, out.stderr
        return out.stdout

    answer = probe(f"ip={GATEWAY}&port=80").splitlines()
    assert answer[0] == f"ping {GATEWAY} ok", answer
    assert answer[1].startswith(f"http {GATEWAY}:80 failed"), answer  # nothing listens there
    answer = probe(f"ip={address}&port=80").splitlines()
    assert answer[1].startswith(f"http {address}:80 ok vrstack-guest {GUEST_NAME}"), answer
    assert probe("ip=1.2.3.4;reboot&port=80").startswith("bad query"), "unchecked query"
    assert "failed" in probe("ip=198.18.200.250&port=80").splitlines()[0]  # no such host

    # A clean Nova stop presses the ACPI power button: the guest powers off.
    qmp(lab.qmp, "system_powerdown")
    try:
        assert qemu.wait(timeout=60) == 0
    except subprocess.TimeoutExpired:
        pytest.fail(
            f"guest still running 60 s after the power button: {lab.console.read_bytes()[-500:]!r}"
        )
    assert b"vrstack-guest: power button, powering off" in lab.console.read_bytes()
