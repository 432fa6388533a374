"""Network namespaces for tests: a veth pair from this namespace (or another) into a
new one, addressed on a small subnet of 198.18.0.0/15. Root and iproute2 needed."""

from __future__ import annotations

import subprocess


def sh(*cmd: str) -> str:
    return subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=30).stdout


def veth(dev: str, near: tuple[str, str], far: tuple[str, str], prefixlen: int = 29) -> None:
    """Link `near` and `far`, each (namespace or "" for this one, address): the ends are
    `dev`+"a" (near) and `dev`+"b" (far); the far namespace must exist."""
    sh("ip", "link", "add", dev + "a", "type", "veth", "peer", "name", dev + "b")
    for end, (ns, addr) in (("a", near), ("b", far)):
        if ns:
            sh("ip", "link", "set", dev + end, "netns", ns)
        inns = ("-n", ns) if ns else ()
        sh("ip", *inns, "addr", "add", f"{addr}/{prefixlen}", "dev", dev + end)
        sh("ip", *inns, "link", "set", dev + end, "up")
        if ns:
            sh("ip", *inns, "link", "set", "lo", "up")
