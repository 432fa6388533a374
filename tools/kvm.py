"""Debian 12 qemu (TCG) machines with a real kernel, for the vrouter kernel module.

The root file system is built once with debootstrap and cached under
/var/cache/vrstack/kernel/<key>/ (key = hash of the package list and the
preparation steps): `rootfs/` (also used as a chroot to build the module
against the guest's kernel), `base.img` (ext4 made from it), `id_ed25519`
(root's ssh key).  Each machine boots from a qcow2 overlay of base.img, gets
ssh on 127.0.0.1:PORT (qemu user networking, eth0) and a fabric NIC (eth1) on a
qemu UDP socket netdev on loopback to one peer machine.  Machine names start with
`vrk-`; state lives in /run/vrstack-kvm/NAME.

    python tools/kvm.py image                      build or reuse the cached image
    python tools/kvm.py build-module [--src DIR]   build vrouter.ko in the chroot
    python tools/kvm.py up NAME --port P --fabric-local L --fabric-remote R --fabric-mac MAC
    python tools/kvm.py down NAME
    python tools/kvm.py ssh NAME -- CMD...
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CACHE = Path("/var/cache/vrstack/kernel")
STATE = Path("/run/vrstack-kvm")
SUITE = "bookworm"
PACKAGES: tuple[str, ...] = (
    "linux-image-amd64",
    "linux-headers-amd64",
    "build-essential",
    "kmod",
    "dkms",
    "systemd",
    "systemd-sysv",
    "dbus",
    "openssh-server",
    "python3",
    "python3-apt",
    "python3-scapy",
    "iproute2",
    "iputils-ping",
    "ethtool",
    "tcpdump",
    "iperf3",
    "procps",
    "rsync",
)
# Bump when the preparation after debootstrap changes.
LAYOUT = 1
IMAGE_SIZE = "4G"
# Two TCG guests booting at once on a busy 2-core host took 200-210 s to ssh.
BOOT_TIMEOUT = 600.0
SSH_OPTS = (
    "-o",
    "StrictHostKeyChecking=no",
    "-o",
    "UserKnownHostsFile=/dev/null",
    "-o",
    "LogLevel=ERROR",
    "-o",
    "ConnectTimeout=5",
    "-o",
    "BatchMode=yes",
)


def log(msg: str) -> None:
    print(f"kvm: {msg}", file=sys.stderr, flush=True)


def run(*args: str, timeout: float = 600, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, check=True, text=True, timeout=timeout, **kw)  # type: ignore[call-overload]


def image_key() -> str:
    text = f"{SUITE} {LAYOUT} " + " ".join(sorted(PACKAGES))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def image_dir() -> Path:
    return CACHE / image_key()


def mirror() -> str:
    """The Debian mirror this machine's apt uses (never a guessed one)."""
    for src in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for line in src.read_text().splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    for line in Path("/etc/apt/sources.list").read_text().splitlines():
        if line.startswith("deb ") and "security" not in line:
            return line.split()[1]
    raise SystemExit("kvm: no Debian mirror in /etc/apt sources")


def prepare(root: Path, tmp: Path) -> None:
    """Make the debootstrapped tree bootable and reachable."""
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").unlink(missing_ok=True)
    net = root / "etc/systemd/network"
    net.mkdir(parents=True, exist_ok=True)
    (net / "10-eth0.network").write_text("[Match]\nName=eth0\n\n[Network]\nDHCP=ipv4\n")
    run("chroot", str(root), "systemctl", "enable", "systemd-networkd", "ssh")
    (root / "etc/fstab").write_text("/dev/vda / ext4 rw,errors=remount-ro 0 1\n")
    # Root logs in with the cached key only.
    run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp / "id_ed25519"))
    ssh = root / "root/.ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    shutil.copy(tmp / "id_ed25519.pub", ssh / "authorized_keys")
    (root / "etc/ssh/sshd_config.d/vrstack.conf").write_text(
        "PermitRootLogin prohibit-password\nUseDNS no\n"
    )
    # No console getty on the serial line fighting the log; journald to console off.
    run("chroot", str(root), "systemctl", "mask", "serial-getty@ttyS0.service")
    run("chroot", str(root), "apt-get", "clean")


def build_image() -> Path:
    final = image_dir()
    if (final / "base.img").exists():
        return final
    CACHE.mkdir(parents=True, exist_ok=True)
    # Several machines may start at once on a cold cache: one builds, the others wait.
    with (CACHE / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if (final / "base.img").exists():
            return final
        return _build_image(final)


def _build_image(final: Path) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{image_key()}-", dir=CACHE))
    try:
        root = tmp / "rootfs"
        start = time.monotonic()
        log(f"debootstrap {SUITE} into {root} ({len(PACKAGES)} packages)")
        run(
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            mirror(),
            timeout=1800,
            stdout=subprocess.DEVNULL,
        )
        prepare(root, tmp)
        log(f"mkfs.ext4 {IMAGE_SIZE}")
        run("mkfs.ext4", "-q", "-F", "-d", str(root), str(tmp / "base.img"), IMAGE_SIZE)
        (tmp / "packages.txt").write_text("\n".join(PACKAGES) + "\n")
        os.rename(tmp, final)
        log(f"image ready in {time.monotonic() - start:.0f}s: {final}")
    finally:
        # A failed debootstrap can leave its mounts behind: never delete through them.
        for sub in ("proc", "sys", "dev/pts", "dev"):
            subprocess.run(
                ["umount", "-R", str(tmp / "rootfs" / sub)], capture_output=True, check=False
            )
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def kernel_version(root: Path) -> str:
    # build is an absolute link, meaningful inside root only.
    versions = sorted(
        p.name
        for p in (root / "lib/modules").iterdir()
        if (root / "usr/src" / f"linux-headers-{p.name}").is_dir()
    )
    if not versions:
        raise SystemExit(f"kvm: no kernel headers in {root}/lib/modules")
    return versions[-1]


@contextlib.contextmanager
def bind(src: Path, dst: Path) -> Iterator[None]:
    dst.mkdir(parents=True, exist_ok=True)
    run("mount", "--bind", str(src), str(dst))
    try:
        yield
    finally:
        subprocess.run(["umount", str(dst)], check=False)


def build_module(src: Path, out: Path | None) -> Path:
    """Build linux/vrouter.ko against the image's kernel in a chroot of it."""
    img = build_image()
    root = img / "rootfs"
    kver = kernel_version(root)
    work = Path(tempfile.mkdtemp(prefix="vrk-build-"))
    try:
        shutil.copytree(src, work / "src", ignore=shutil.ignore_patterns("build", "*.o", "*.ko"))
        inside = Path("/mnt/vrk-src")
        with bind(work / "src", root / inside.relative_to("/")):
            start = time.monotonic()
            run(
                "chroot",
                str(root),
                "make",
                "-s",
                "-C",
                f"/lib/modules/{kver}/build",
                f"M={inside}/linux",
                "modules",
                timeout=600,
            )
            log(f"vrouter.ko built for {kver} in {time.monotonic() - start:.1f}s")
        ko = work / "src/linux/vrouter.ko"
        dest = out or (src / "build" / f"vrouter-{kver}.ko")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ko, dest)
        return dest
    finally:
        shutil.rmtree(work, ignore_errors=True)


def vm_dir(name: str) -> Path:
    if not name.startswith("vrk-"):
        raise SystemExit(f"kvm: machine names start with vrk- (got {name})")
    return STATE / name


def ssh_cmd(name: str, *cmd: str) -> list[str]:
    d = vm_dir(name)
    port = (d / "port").read_text().strip()
    return ["ssh", *ssh_opts(name), "-p", port, "root@127.0.0.1", *cmd]


def ssh_opts(name: str) -> list[str]:
    """Options for ssh to a machine; one shared connection (TCG makes handshakes slow)."""
    d = vm_dir(name)
    key = image_dir() / "id_ed25519"
    return [
        *SSH_OPTS,
        "-i",
        str(key),
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={d}/ssh.sock",
        "-o",
        "ControlPersist=300",
    ]


def running(name: str) -> int | None:
    """The qemu PID of a machine that is up, else None."""
    pidf = vm_dir(name) / "pid"
    try:
        pid = int(pidf.read_text())
        os.kill(pid, 0)
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0]:
                return None
        return pid
    except (FileNotFoundError, ValueError, ProcessLookupError):
        return None


def launch(
    name: str,
    d: Path,
    img: Path,
    kver: str,
    port: int,
    fabric: tuple[int, int],
    fabric_mac: str,
    mem: int,
) -> int:
    d.mkdir(parents=True, exist_ok=True)
    disk = d / "disk.qcow2"
    disk.unlink(missing_ok=True)
    run(
        "qemu-img",
        "create",
        "-q",
        "-f",
        "qcow2",
        "-F",
        "raw",
        "-b",
        str(img / "base.img"),
        str(disk),
    )
    (d / "port").write_text(f"{port}\n")
    # eth0: ssh from this machine only (restrict=on: no way out); eth1: the
    # fabric, a UDP socket netdev on loopback to the peer machine.
    cmd = [
        "qemu-system-x86_64",
        "-accel",
        "tcg",
        "-smp",
        "2",
        "-m",
        str(mem),
        "-nographic",
        "-kernel",
        str(img / f"rootfs/boot/vmlinuz-{kver}"),
        "-initrd",
        str(img / f"rootfs/boot/initrd.img-{kver}"),
        "-drive",
        f"file={disk},if=virtio,format=qcow2",
        "-append",
        f"root=/dev/vda console=ttyS0 rw net.ifnames=0 systemd.hostname={name} panic=-1",
        "-netdev",
        f"user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:22",
        "-device",
        "virtio-net-pci,netdev=n0",
        "-netdev",
        f"socket,id=n1,udp=127.0.0.1:{fabric[1]},localaddr=127.0.0.1:{fabric[0]}",
        "-device",
        f"virtio-net-pci,netdev=n1,mac={fabric_mac}",
    ]
    with (d / "console.log").open("w") as console:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=console, stderr=console, start_new_session=True
        )
    (d / "pid").write_text(f"{proc.pid}\n")
    return proc.pid


def up(name: str, port: int, fabric: tuple[int, int], fabric_mac: str, mem: int) -> None:
    img = build_image()
    root = img / "rootfs"
    kver = kernel_version(root)
    d = vm_dir(name)
    # A fixed path for inventories (molecule/kernel) to name.
    key = STATE / "id_ed25519"
    if not key.exists() or key.read_bytes() != (img / "id_ed25519").read_bytes():
        STATE.mkdir(parents=True, exist_ok=True)
        shutil.copy(img / "id_ed25519", key)
        key.chmod(0o600)
    start = time.monotonic()
    pid = running(name)
    if pid is None:
        pid = launch(name, d, img, kver, port, fabric, fabric_mac, mem)
    else:
        log(f"{name} already running (pid {pid})")
    deadline = time.monotonic() + BOOT_TIMEOUT
    while time.monotonic() < deadline:
        if running(name) is None:
            tail = (d / "console.log").read_text(errors="replace").splitlines()[-25:]
            raise SystemExit(f"kvm: {name}: qemu exited; console:\n" + "\n".join(tail))
        res = subprocess.run(ssh_cmd(name, "true"), capture_output=True, timeout=30, check=False)
        if res.returncode == 0:
            log(f"{name}: ssh on 127.0.0.1:{port} after {time.monotonic() - start:.0f}s")
            return
        time.sleep(2)
    down(name)
    raise SystemExit(f"kvm: {name}: no ssh after {BOOT_TIMEOUT:.0f}s, see {d}/console.log")


def down(name: str) -> None:
    d = vm_dir(name)
    pidf = d / "pid"
    if pidf.exists():
        pid = int(pidf.read_text())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)
            os.kill(pid, signal.SIGKILL)
        pidf.unlink()
    # Keep the last console log for post-mortems.
    with contextlib.suppress(FileNotFoundError):
        shutil.copy(d / "console.log", STATE / f"{name}.console.log")
    shutil.rmtree(d, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("image")
    b = sub.add_parser("build-module")
    b.add_argument("--src", type=Path, default=REPO / "files/vrouter-src")
    b.add_argument("--out", type=Path)
    u = sub.add_parser("up")
    u.add_argument("name")
    u.add_argument("--port", type=int, required=True)
    u.add_argument("--fabric-local", type=int, required=True, help="UDP port on 127.0.0.1")
    u.add_argument("--fabric-remote", type=int, required=True, help="the peer's UDP port")
    u.add_argument("--fabric-mac", required=True)
    u.add_argument("--mem", type=int, default=1024)
    d = sub.add_parser("down")
    d.add_argument("name")
    s = sub.add_parser("ssh")
    s.add_argument("name")
    s.add_argument("command", nargs="+")
    sub.add_parser("key")
    a = p.parse_args(argv)
    if a.cmd == "image":
        print(build_image())
    elif a.cmd == "build-module":
        print(build_module(a.src.resolve(), a.out))
    elif a.cmd == "up":
        up(a.name, a.port, (a.fabric_local, a.fabric_remote), a.fabric_mac, a.mem)
    elif a.cmd == "down":
        down(a.name)
    elif a.cmd == "ssh":
        return subprocess.run(ssh_cmd(a.name, *a.command), check=False).returncode
    elif a.cmd == "key":
        print(image_dir() / "id_ed25519")
    return 0


if __name__ == "__main__":
    sys.exit(main())
