"""Whether a port's tap exists, and a wake-up when interfaces come and go.

libvirt creates a guest's tap when the guest starts and deletes it when it stops (and
does both on a hard reboot); the agent never creates it. It attaches the tap to the
port's vif when it is there (`ifindex` non-zero) and detaches it when it goes. On Linux
an rtnetlink socket (RTMGRP_LINK) wakes the agent as soon as a link changes; everywhere
the agent also polls, so a missed or unavailable notification only delays.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import Callable

RTMGRP_LINK = 1


def ifindex(name: str) -> int:
    """The interface's index, 0 when there is no interface of that name."""
    try:
        return socket.if_nametoindex(name)
    except OSError:
        return 0


class LinkEvents:
    """Calls `wake` whenever the kernel announces a link change (Linux only)."""

    def __init__(self, wake: Callable[[], None]) -> None:
        self.wake = wake
        self.sock: socket.socket | None = None

    def open(self) -> bool:
        if not sys.platform.startswith("linux"):
            return False
        try:
            sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, socket.NETLINK_ROUTE)
            sock.bind((0, RTMGRP_LINK))
            sock.setblocking(False)
        except OSError:
            return False
        self.sock = sock
        asyncio.get_running_loop().add_reader(sock.fileno(), self._readable)
        return True

    def _readable(self) -> None:
        assert self.sock is not None
        # The content does not matter: any link message means "look again".
        for _ in range(64):  # bounded per wake-up
            try:
                self.sock.recv(65536)
            except BlockingIOError:
                break
            except OSError:  # ENOBUFS: messages were lost; looking again covers them
                break
        self.wake()

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(self.sock.fileno())
            self.sock.close()
            self.sock = None
