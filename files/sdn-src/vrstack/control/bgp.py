"""BGP sessions for IPv4 L3VPN: the finite state machine, timers, and the Adj-RIB-Out.

`BgpSpeaker` listens for and opens connections to the configured peers (every
`bgp-router` but ourselves), runs one session per peer (RFC 4271 collision detection
keeps one when both sides connect at once), hands received routes to its `RouteSink`,
and sends every peer the routes in `exports` (the node's locally originated VPN routes).
Routes learnt from a peer are never sent on to others: control nodes are a full mesh.

The listener admits connections through a `connlimits.Gate`: one from an address that
is not a configured peer is closed at once (nothing read or sent), a peer holds at most
two (a collision needs both, briefly), and all of them at most `max_connections`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, Protocol

from ..service import connlimits
from . import bgp_codec as bc
from . import tcp_md5

log = logging.getLogger(__name__)
MAX_NLRI_PER_UPDATE = 200  # 16 bytes each: well under the 4096-byte message limit
# Incoming connections (`bgp.max_connections*`): two per peer for a collision (RFC 4271
# 6.8); the total must exceed the number of peers.
BGP_LIMITS = connlimits.ConnLimits(max_connections=64, max_connections_per_source=2)


@dataclass(frozen=True)
class Advert:
    """A route this node originates, as sent in an UPDATE."""

    prefix: bc.VpnPrefix
    next_hop: str
    targets: tuple[str, ...]
    encaps: tuple[str, ...]


@dataclass
class PeerConfig:
    name: str
    address: str
    port: int
    asn: int
    hold_time: int
    role: str  # "control-node" or "gateway"
    # TCP MD5 (RFC 2385) password for this peer; "" for none. Kept out of repr and logs.
    password: str = field(default="", repr=False)


class RouteSink(Protocol):
    def bgp_update(self, peer: Peer, update: bc.Update) -> None: ...
    def bgp_down(self, peer: Peer) -> None: ...


@dataclass
class Peer:
    config: PeerConfig
    state: str = "Idle"
    flaps: int = 0
    established_at: float | None = None
    last_error: str = ""
    received: int = 0  # VPN prefixes currently held from this peer
    session: Session | None = None
    sessions: set[Session] = field(default_factory=set)
    sent: dict[tuple[str, str], Advert] = field(default_factory=dict)
    dirty: set[tuple[str, str]] = field(default_factory=set)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    @property
    def source(self) -> str:
        return f"bgp:{self.config.address}"

    def introspect(self) -> dict[str, Any]:
        c = self.config
        return {
            "name": c.name,
            "address": c.address,
            "port": c.port,
            "asn": c.asn,
            "role": c.role,
            "auth": "md5" if c.password else "none",
            "state": self.state,
            "flaps": self.flaps,
            "established_at": self.established_at,
            "last_error": self.last_error,
            "received_routes": self.received,
            "advertised_routes": len(self.sent),
        }


class Session:
    """One TCP connection to a peer, from OPEN to close."""

    def __init__(
        self,
        speaker: BgpSpeaker,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        peer: Peer,
        outbound: bool,
    ) -> None:
        self.speaker = speaker
        self.reader = reader
        self.writer = writer
        self.peer = peer
        self.outbound = outbound
        self.state = "OpenSent"
        self.remote_id = ""
        self.hold = 0
        self.as4 = True
        self.closed = False

    async def send(self, msg: bc.Message) -> None:
        self.writer.write(bc.encode(msg))
        await self.writer.drain()

    async def read(self) -> bc.Message:
        # Before the peer's OPEN the open timer runs; after it, the negotiated hold timer.
        timeout = self.speaker.open_timeout if self.state == "OpenSent" else (self.hold or None)
        try:
            header = await asyncio.wait_for(self.reader.readexactly(bc.HEADER_LEN), timeout)
            length, mtype = bc.parse_header(header)
            body = await asyncio.wait_for(self.reader.readexactly(length - bc.HEADER_LEN), timeout)
        except TimeoutError:
            raise bc.BgpError(bc.HOLD_EXPIRED, 0, "hold timer expired") from None
        return bc.parse_body(mtype, body, self.as4)

    async def run(self) -> None:
        peer, sp = self.peer, self.speaker
        peer.sessions.add(self)
        try:
            await self.send(
                bc.Open(asn=sp.asn, hold_time=peer.config.hold_time, router_id=sp.router_id)
            )
            await self._open_phase()
            await self._established()
        except bc.BgpError as exc:
            peer.last_error = str(exc)
            log.warning("bgp session error", extra={"peer": peer.config.address, "error": str(exc)})
            with contextlib.suppress(Exception):
                await self.send(bc.Notification(exc.code, exc.subcode, exc.data))
        except (OSError, asyncio.IncompleteReadError, ConnectionError) as exc:
            peer.last_error = f"connection lost: {exc!r}"
        finally:
            await self.close()

    async def _open_phase(self) -> None:
        peer, sp = self.peer, self.speaker
        msg = await self.read()
        if isinstance(msg, bc.Notification):
            raise ConnectionError(f"peer sent NOTIFICATION {msg.code}/{msg.subcode}")
        if not isinstance(msg, bc.Open):
            raise bc.BgpError(bc.FSM_ERROR, 1, "expected OPEN")
        if msg.asn != peer.config.asn:
            raise bc.BgpError(
                bc.OPEN_ERROR,
                bc.OPEN_BAD_PEER_AS,
                f"peer AS {msg.asn}, configured {peer.config.asn}",
            )
        if msg.router_id == sp.router_id:
            raise bc.BgpError(bc.OPEN_ERROR, bc.OPEN_BAD_ID, "peer uses our BGP identifier")
        if (bc.AFI_IPV4, bc.SAFI_VPN) not in msg.families:
            raise bc.BgpError(bc.OPEN_ERROR, 7, "peer does not do IPv4 L3VPN (AFI 1 SAFI 128)")
        if not msg.as4:  # we always encode AS_PATH with 4-byte numbers
            raise bc.BgpError(bc.OPEN_ERROR, 7, "peer lacks the 4-octet AS capability")
        self.remote_id = msg.router_id
        self.as4 = msg.as4
        self.hold = min(peer.config.hold_time, msg.hold_time)
        self.state = "OpenConfirm"
        if peer.state != "Established":
            peer.state = "OpenConfirm"
        self._resolve_collision()
        await self.send(bc.Keepalive())
        msg = await self.read()
        if isinstance(msg, bc.Notification):
            raise ConnectionError(f"peer sent NOTIFICATION {msg.code}/{msg.subcode}")
        if not isinstance(msg, bc.Keepalive):
            raise bc.BgpError(bc.FSM_ERROR, 2, "expected KEEPALIVE in OpenConfirm")

    def _resolve_collision(self) -> None:
        """RFC 4271 6.8: of two connections to one peer, keep the one the higher id opened."""
        for other in list(self.peer.sessions):
            if other is self or other.state not in ("OpenConfirm", "Established"):
                continue
            if other.state == "Established":
                loser = self
            else:
                ours_wins = self.speaker.router_id_int > _ip_int(self.remote_id)
                # Keep the connection opened by the side with the higher identifier.
                keep_outbound = ours_wins
                loser = other if self.outbound == keep_outbound else self
            if loser is self:
                raise bc.BgpError(bc.CEASE, bc.CEASE_COLLISION, "connection collision")
            self.speaker.spawn(loser.abort(bc.CEASE_COLLISION))

    async def abort(self, subcode: int) -> None:
        with contextlib.suppress(Exception):
            await self.send(bc.Notification(bc.CEASE, subcode))
        await self.close()

    async def _established(self) -> None:
        peer, sp = self.peer, self.speaker
        self.state = peer.state = "Established"
        peer.session = self
        peer.established_at = time.time()
        peer.last_error = ""
        peer.sent.clear()
        peer.dirty = set(sp.exports)
        peer.wake.set()
        log.info("bgp session established", extra={"peer": peer.config.address, "hold": self.hold})
        sender = asyncio.ensure_future(self._sender())
        try:
            while True:
                msg = await self.read()
                if isinstance(msg, bc.Update):
                    sp.sink.bgp_update(peer, msg)
                elif isinstance(msg, bc.RouteRefresh):
                    peer.sent.clear()
                    peer.dirty = set(sp.exports)
                    peer.wake.set()
                elif isinstance(msg, bc.Notification):
                    raise ConnectionError(f"peer sent NOTIFICATION {msg.code}/{msg.subcode}")
                elif isinstance(msg, bc.Open):
                    raise bc.BgpError(bc.FSM_ERROR, 3, "OPEN in Established")
        finally:
            sender.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await sender

    async def _sender(self) -> None:
        """Send the whole Adj-RIB-Out and End-of-RIB, then changes, and KEEPALIVEs when idle."""
        peer = self.peer
        for msg in self.speaker.updates_for(peer):
            await self.send(msg)
        await self.send(bc.Update(end_of_rib=True))
        keepalive = self.hold / 3 if self.hold else None
        while True:
            try:
                await asyncio.wait_for(peer.wake.wait(), keepalive)
            except TimeoutError:
                await self.send(bc.Keepalive())
                continue
            peer.wake.clear()
            for msg in self.speaker.updates_for(peer):
                await self.send(msg)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        peer = self.peer
        peer.sessions.discard(self)
        with contextlib.suppress(Exception):
            self.writer.close()
        if peer.session is self:
            peer.session = None
            peer.state = "Idle"
            peer.flaps += 1
            peer.sent.clear()
            peer.received = 0
            log.info(
                "bgp session down", extra={"peer": peer.config.address, "error": peer.last_error}
            )
            self.speaker.sink.bgp_down(peer)
        elif not peer.sessions and peer.session is None:
            peer.state = "Idle"


def _ip_int(addr: str) -> int:
    a, b, c, d = (int(x) for x in addr.split("."))
    return a << 24 | b << 16 | c << 8 | d


class BgpSpeaker:
    def __init__(
        self,
        sink: RouteSink,
        router_id: str,
        asn: int,
        address: str,
        port: int,
        connect_retry: float = 5.0,
        open_timeout: float = 30.0,
        limits: connlimits.ConnLimits = BGP_LIMITS,
    ) -> None:
        self.sink = sink
        self.router_id = router_id
        self.router_id_int = _ip_int(router_id)
        self.asn = asn
        self.address = address
        self.port = port
        self.connect_retry = connect_retry
        self.open_timeout = open_timeout
        self.peers: dict[str, Peer] = {}  # by address
        # Counts accepted connections (`open`, `refused`): only configured peers get in.
        self.gate = connlimits.Gate(limits, "bgp", allow=lambda source: source in self.peers)
        self.exports: dict[tuple[str, str], Advert] = {}
        self.server: asyncio.Server | None = None
        self._listener_keys: dict[str, str] = {}  # address -> MD5 password on the listener
        self.stopping = False
        self._tasks: set[asyncio.Task[None]] = set()

    def spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run a short task in the background, keeping a reference until it ends."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self) -> None:
        self.server = await connlimits.start_server(
            self._accept, self.address, self.port, self.gate
        )
        self.port = self.server.sockets[0].getsockname()[1]
        self._sync_listener_keys()
        log.info("bgp listening", extra={"address": self.address, "port": self.port})

    def _sync_listener_keys(self) -> None:
        """Put each peer's MD5 password on the listening socket; remove the stale ones."""
        if self.server is None:
            return
        want = {a: p.config.password for a, p in self.peers.items() if p.config.password}
        for addr in sorted(set(want) | set(self._listener_keys)):
            if want.get(addr, "") == self._listener_keys.get(addr, ""):
                continue
            for sock in self.server.sockets:
                tcp_md5.set_key(sock, addr, want.get(addr, ""))
            if addr in want:
                self._listener_keys[addr] = want[addr]
            else:
                del self._listener_keys[addr]

    async def stop(self) -> None:
        self.stopping = True
        if self.server is not None:
            self.server.close()
        for peer in list(self.peers.values()):
            await self._remove_peer(peer, bc.CEASE_ADMIN_SHUTDOWN)

    # ---- peers ------------------------------------------------------------------

    def set_peers(self, configs: list[PeerConfig]) -> None:
        """Start sessions to new peers, stop those no longer configured, restart changed ones."""
        wanted = {c.address: c for c in configs}
        for addr, peer in list(self.peers.items()):
            if wanted.get(addr) != peer.config:
                del self.peers[addr]
                self.spawn(self._remove_peer(peer, bc.CEASE_PEER_DECONFIGURED))
        for addr, cfg in wanted.items():
            if addr not in self.peers:
                peer = Peer(cfg)
                self.peers[addr] = peer
                peer.task = asyncio.ensure_future(self._connect_loop(peer))
        self._sync_listener_keys()

    async def _remove_peer(self, peer: Peer, subcode: int) -> None:
        if self.peers.get(peer.config.address) is peer:
            del self.peers[peer.config.address]
        if peer.task is not None:
            peer.task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await peer.task
        for s in list(peer.sessions):
            await s.abort(subcode)

    async def _connect_loop(self, peer: Peer) -> None:
        """Keep one session to the peer: connect when there is none, retry with backoff."""
        delay = min(1.0, self.connect_retry)
        while not self.stopping:
            if not peer.sessions:
                peer.state = "Connect"
                try:
                    reader, writer = await asyncio.wait_for(
                        self._connect(peer.config), self.connect_retry
                    )
                except TimeoutError:
                    peer.last_error = f"connect: no answer within {self.connect_retry:g}s"
                    if peer.config.password:  # the kernel drops badly signed segments
                        peer.last_error += " (or the peer's TCP MD5 password differs)"
                    if not peer.sessions:
                        peer.state = "Active"
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.connect_retry)
                    continue
                except OSError as exc:
                    peer.last_error = f"connect: {exc!r}"
                    if not peer.sessions:
                        peer.state = "Active"
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, self.connect_retry)
                    continue
                delay = min(1.0, self.connect_retry)
                await Session(self, reader, writer, peer, outbound=True).run()
            else:
                await asyncio.sleep(0.2 if peer.state != "Established" else 1.0)
            # A session just ended: wait a little before reconnecting (idle hold).
            if not peer.sessions:
                await asyncio.sleep(delay)

    async def _connect(self, cfg: PeerConfig) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """A connection from our address to the peer, its MD5 key set before the SYN."""
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.setblocking(False)
            sock.bind((self.address, 0))
            if cfg.password:
                tcp_md5.set_key(sock, cfg.address, cfg.password)
            await loop.sock_connect(sock, (cfg.address, cfg.port))
            return await asyncio.open_connection(sock=sock)
        except BaseException:
            sock.close()
            raise

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        remote = writer.get_extra_info("peername")[0]
        peer = self.peers.get(remote)
        if peer is None or self.stopping:  # deconfigured (or stopping) since the gate let it in
            writer.close()
            return
        await Session(self, reader, writer, peer, outbound=False).run()

    # ---- exports --------------------------------------------------------------

    def set_export(self, key: tuple[str, str], advert: Advert | None) -> None:
        if advert is None:
            if self.exports.pop(key, None) is None:
                return
        elif self.exports.get(key) == advert:
            return
        else:
            self.exports[key] = advert
        for peer in self.peers.values():
            if peer.session is not None:
                peer.dirty.add(key)
                peer.wake.set()

    def updates_for(self, peer: Peer) -> list[bc.Update]:
        """UPDATEs that bring the peer's Adj-RIB-Out to the exports; marks them sent."""
        ebgp = peer.config.asn != self.asn
        withdraw: list[bc.VpnPrefix] = []
        groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[bc.VpnPrefix]] = {}
        for key in sorted(peer.dirty):
            want = self.exports.get(key)
            have = peer.sent.get(key)
            if want == have:
                continue
            if want is None:
                if have is not None:
                    withdraw.append(have.prefix)
                    del peer.sent[key]
                continue
            groups.setdefault((want.next_hop, want.targets, want.encaps), []).append(want.prefix)
            peer.sent[key] = want
        peer.dirty.clear()
        out: list[bc.Update] = []
        for i in range(0, len(withdraw), MAX_NLRI_PER_UPDATE):
            out.append(bc.Update(vpn_unreach=withdraw[i : i + MAX_NLRI_PER_UPDATE]))
        for (nh, targets, encaps), prefixes in groups.items():
            ext = [bc.encode_route_target(t) for t in targets] + [
                bc.encode_encap(e) for e in encaps
            ]
            for i in range(0, len(prefixes), MAX_NLRI_PER_UPDATE):
                out.append(
                    bc.Update(
                        origin=0,
                        as_path=[self.asn] if ebgp else [],
                        local_pref=None if ebgp else 100,
                        ext_communities=ext,
                        vpn_next_hop=nh,
                        vpn_reach=prefixes[i : i + MAX_NLRI_PER_UPDATE],
                    )
                )
        return out

    def introspect(self) -> list[dict[str, Any]]:
        return [p.introspect() for p in sorted(self.peers.values(), key=lambda p: p.config.address)]
