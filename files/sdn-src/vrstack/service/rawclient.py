"""A misbehaving TCP client for the robustness tests of our servers.

It writes exactly what it is told (whole, or one byte at a time: slowloris), reads
everything the server sends back in the background, and records when the server closed
the connection, so a test can check that a bad client is cut off within a bound while
good clients are served. Loopback only, like every test here.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class RawClient:
    def __init__(self, port: int, host: str = "127.0.0.1", source: str = "") -> None:
        self.host = host
        self.port = port
        self.source = source  # a local address to connect from (another 127.0.0.x)
        self.received = b""
        self.opened_at = 0.0
        self.closed_at: float | None = None  # monotonic time the server closed or reset
        self._task: asyncio.Task[None] | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def connect(self) -> RawClient:
        local = (self.source, 0) if self.source else None
        reader, self._writer = await asyncio.open_connection(self.host, self.port, local_addr=local)
        self.opened_at = time.monotonic()
        self._task = asyncio.ensure_future(self._read(reader))
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        try:
            while chunk := await reader.read(65536):
                self.received += chunk
        except (ConnectionError, OSError):
            pass  # a reset (the server closed with our input unread): closed all the same
        self.closed_at = time.monotonic()

    async def send(self, data: bytes) -> bool:
        """Write and drain; False once the server has closed the connection."""
        assert self._writer is not None, "connect() first"
        if self.closed_at is not None:
            return False
        try:
            self._writer.write(data)
            await self._writer.drain()
        except (ConnectionError, OSError):
            return False
        return True

    async def trickle(self, data: bytes, interval: float) -> int:
        """One byte every `interval` seconds until done or closed; returns bytes sent."""
        for i in range(len(data)):
            if not await self.send(data[i : i + 1]):
                return i
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._done()), interval)
        return len(data)

    async def _done(self) -> None:
        assert self._task is not None, "connect() first"
        await self._task

    async def closed_within(self, since: float, bound: float) -> float:
        """Wait for the server to close; returns the seconds from `since` (monotonic) to
        the close, and fails when that is more than `bound` (waiting 5 s longer at most)."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(
                asyncio.shield(self._done()), since + bound + 5 - time.monotonic()
            )
        assert self.closed_at is not None, f"still open {bound + 5:.0f}s after it misbehaved"
        took = self.closed_at - since
        assert took <= bound, f"closed after {took:.1f}s, bound {bound:.1f}s: {self.received!r}"
        return took

    async def answered_within(self, since: float, bound: float) -> float:
        """Wait for a whole HTTP response head; returns the seconds from `since` to it,
        failing past `bound`."""
        deadline = since + bound
        while b"\r\n\r\n" not in self.received:
            assert time.monotonic() < deadline, f"no answer within {bound:.1f}s: {self.received!r}"
            if self.closed_at is not None:
                raise AssertionError(f"closed without an answer: {self.received!r}")
            await asyncio.sleep(0.02)
        return time.monotonic() - since

    def status(self) -> int | None:
        """The HTTP status of the first response received, if any."""
        line = self.received.split(b"\r\n", 1)[0].split()
        return int(line[1]) if len(line) > 1 and line[0].startswith(b"HTTP/") else None

    def body(self) -> bytes:
        """The body of the first HTTP response received (to the end of what came)."""
        return self.received.split(b"\r\n\r\n", 1)[1] if b"\r\n\r\n" in self.received else b""

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        if self._task is not None:
            self._task.cancel()


async def wait_refused(clients: list[RawClient], count: int, bound: float) -> list[RawClient]:
    """Wait (bounded) until `count` of `clients` are closed, and check that each closed one
    was closed within `bound` seconds of connecting without a byte from the server (a
    connection refused over a limit). Returns the closed ones."""
    closed: list[RawClient] = []
    for _attempt in range(int(bound / 0.05) + 100):
        closed = [c for c in clients if c.closed_at is not None]
        if len(closed) >= count:
            break
        await asyncio.sleep(0.05)
    assert len(closed) >= count, f"{len(closed)} of {len(clients)} closed, wanted {count}"
    for c in closed:
        assert c.received == b"", c.received  # closed, not answered
        assert c.closed_at is not None and c.closed_at - c.opened_at <= bound
    return closed


__all__ = ["RawClient", "wait_refused"]
