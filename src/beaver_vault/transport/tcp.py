"""TCP transport for the raft port, on Trio.

Theory of operation
-------------------
Every node listens on its raft port and opens ONE outbound connection per peer; each
direction of traffic has its own connection. Outbound connections carry our frames and are
never read except to notice that the peer closed them; inbound connections are receive-only.
So a message's path is: ``send`` -> the peer's queue -> the peer's writer task -> socket ->
the peer's inbound handler -> ``FrameDecoder`` -> checks -> ``deliver(msg)``.

``send`` is synchronous and never blocks: it encodes the frame at once (stamped with the
current cluster id) and puts it in the peer's bounded Trio memory channel with
``send_nowait``. A full queue (``queue_max`` frames or ``queue_max_bytes``), an unknown
destination or an unencodable message is dropped and counted: Raft retransmits, so losing
a message is always safe, waiting for a slow peer is not.

Each peer's writer task connects (with a timeout), then writes whatever is queued in one
``send_all`` per batch. With ``direct_writes`` (the owner promises to call ``flush`` after
each batch of events it handles, as ``node.runtime`` does after every processing round) and
no TLS, a frame sent while that task is idle (connected, nothing queued) skips it: ``send``
keeps it aside and ``flush`` writes the peer's frames with one non-blocking ``send`` on the
connection at once; what the socket does not take goes to the queue, ahead of anything
later, and the writer task takes over (if the connection ends first, that rest and what
follows it are discarded: the rest of a frame cannot start another connection). This saves a
task switch on each hop of a write at low load (about 0.1 ms of each on this machine), not a
system call. When the connection breaks, it reconnects after a backoff that
doubles from ``backoff_min_s`` to ``backoff_max_s`` on consecutive failures, with jitter
from the injected ``rng``; an inbound connection (a peer coming back) cuts every pending
backoff short, so a restarted member is reconnected at once. After a failed attempt it discards the frames queued meanwhile
(counted as ``dropped_unreachable``): stale heartbeats and appends are worth less than the
bandwidth they would take once the peer is back. A write that makes no progress for
``write_timeout_s`` (a stopped peer) drops the connection too.

Inbound connections (``transport/tcp_inbound.py``) are receive-only: frames are
decoded, checked by the gate of ``transport.inbound.admit`` (framing errors, absurd messages
and impostors close the connection; another cluster, an unknown sender or another destination
is dropped and counted) and handed to ``deliver`` synchronously from the inbound task; an
exception in it is a broken invariant of the owner and propagates.

Mutual TLS (``tls``: see ``transport.tls``): both directions are ``trio.SSLStream`` objects; the
listener takes the dialler's node id from its certificate (no node id: refused) and that id
is the connection's sender; the dialler checks that the listener's certificate names the
peer it meant to reach. Without TLS (development mode, loopback only unless ``--insecure``)
the first message of a connection binds its sender instead, which stops nothing but
confusion: anyone who can reach the port can claim any id.

Inbound connections are bounded (``max_inbound``, ``max_inbound_per_host``, ``idle_timeout_s``,
``handshake_timeout_s``, ``partial_budget_bytes``): see ``transport/tcp_inbound.py``.

``set_peers`` adds and removes peers at any time; a removed peer's task is cancelled and its
queue discarded. ``statistics()`` returns a frozen snapshot of the counters
(``transport/tcp_stats.py``).
"""

from __future__ import annotations

import os
import random
import socket
import ssl
from collections.abc import Callable, Mapping
from dataclasses import asdict

import trio

from beaver_vault.raft.messages import Message, NodeId
from beaver_vault.transport.codec import (
    MAX_ENTRIES_DEFAULT,
    MAX_FRAME_BYTES_DEFAULT,
    EncodeError,
    encode_frame,
)
from beaver_vault.transport.tcp_inbound import Inbound
from beaver_vault.transport.tcp_stats import Counters, TransportStatistics
from beaver_vault.transport.tls import PeerTls, node_id_of

__all__ = ["TcpTransport", "TransportStatistics", "parse_address"]


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``; ``ValueError`` if malformed."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"not a host:port address: {address!r}")
    return host, int(port_text)


class _Peer:
    __slots__ = (
        "node_id",
        "address",
        "send_ch",
        "recv_ch",
        "queued_bytes",
        "scope",
        "removed",
        "wake",
        "idle_sock",
        "direct",
        "direct_bytes",
        "rest_queued",
    )

    def __init__(self, node_id: NodeId, address: str, queue_max: int) -> None:
        self.node_id = node_id
        self.address = address
        self.send_ch, self.recv_ch = trio.open_memory_channel[bytes](queue_max)
        self.queued_bytes = 0
        self.scope: trio.CancelScope | None = None
        self.removed = False
        self.wake = trio.Event()  # set to cut a reconnect backoff short (a peer came back)
        # The connection's socket while the writer task waits with nothing queued (no TLS), and
        # the frames ``send`` kept aside for ``flush`` meanwhile.
        self.idle_sock: socket.socket | None = None
        self.direct: list[bytes] = []
        self.direct_bytes = 0
        # The head of the queue is the rest of a frame flush wrote in part: it belongs to this
        # connection only (on a new one it would break the framing).
        self.rest_queued = False

    def take_nowait(self) -> bytes:
        frame = self.recv_ch.receive_nowait()
        self.queued_bytes -= len(frame)
        return frame


class TcpTransport:
    """See the module docstring. Implements ``transport.base.Transport``."""

    def __init__(
        self,
        node_id: NodeId,
        *,
        bind_host: str,
        bind_port: int,
        deliver: Callable[[Message], None],
        rng: random.Random,
        cluster_id: str | None = None,
        queue_max: int = 1024,
        queue_max_bytes: int = 64 * 1024 * 1024,
        max_frame_bytes: int = MAX_FRAME_BYTES_DEFAULT,
        max_entries: int = MAX_ENTRIES_DEFAULT,
        batch_max_bytes: int = 1024 * 1024,
        backoff_min_s: float = 0.05,
        backoff_max_s: float = 2.0,
        connect_timeout_s: float = 5.0,
        write_timeout_s: float = 10.0,
        max_inbound: int = 64,
        max_inbound_per_host: int = 16,
        idle_timeout_s: float = 60.0,
        handshake_timeout_s: float = 5.0,
        partial_budget_bytes: int = 64 * 1024 * 1024,
        tls: PeerTls | None = None,
        direct_writes: bool = False,
    ) -> None:
        if queue_max < 1 or max_inbound < 1 or max_inbound_per_host < 1 or not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError(
                "queue_max, max_inbound and max_inbound_per_host must be >= 1, 0 < backoff_min_s <= backoff_max_s"
            )
        if idle_timeout_s <= 0 or handshake_timeout_s <= 0 or partial_budget_bytes < 1:
            raise ValueError("idle_timeout_s, handshake_timeout_s and partial_budget_bytes must be positive")
        self.node_id = node_id
        self._bind_host = bind_host
        self._bind_port = bind_port
        self._rng = rng
        self._cluster_id = cluster_id
        self._queue_max = queue_max
        self._queue_max_bytes = queue_max_bytes
        self._max_frame_bytes = max_frame_bytes
        self._max_entries = max_entries
        self._batch_max_bytes = batch_max_bytes
        self._backoff_min_s = backoff_min_s
        self._backoff_max_s = backoff_max_s
        self._connect_timeout_s = connect_timeout_s
        self._write_timeout_s = write_timeout_s
        self._tls = tls
        self._direct_writes = direct_writes
        self._peers: dict[NodeId, _Peer] = {}
        self._dirty: list[_Peer] = []  # peers with frames kept aside for flush
        self._nursery: trio.Nursery | None = None
        self._counters = Counters()
        self._peer_tasks = 0
        self.listen_port: int | None = None
        self._in = Inbound(
            node_id,
            counters=self._counters,
            deliver=deliver,
            cluster_id=lambda: self._cluster_id,
            known_senders=self._peers,
            on_connect=self._wake_peers,
            tls=tls,
            max_frame_bytes=max_frame_bytes,
            max_entries=max_entries,
            max_inbound=max_inbound,
            max_inbound_per_host=max_inbound_per_host,
            idle_timeout_s=idle_timeout_s,
            handshake_timeout_s=handshake_timeout_s,
            partial_budget_bytes=partial_budget_bytes,
        )

    # ------------------------------------------------------------------ Transport protocol

    def send(self, msg: Message) -> None:
        peer = self._peers.get(msg.dst)
        if peer is None:
            self._counters.dropped_no_address += 1
            return
        try:
            frame = encode_frame(
                self._cluster_id, msg, max_frame_bytes=self._max_frame_bytes, max_entries=self._max_entries
            )
        except EncodeError:
            self._counters.dropped_unencodable += 1
            return
        if peer.idle_sock is not None:
            if peer.direct_bytes + len(frame) > self._queue_max_bytes:
                self._counters.dropped_queue_full += 1  # the same bound as the queue's
                return
            if not peer.direct:
                self._dirty.append(peer)
            peer.direct.append(frame)
            peer.direct_bytes += len(frame)
            return
        self._enqueue(peer, frame)

    def flush(self) -> None:
        """Write the frames ``send`` kept aside for idle connections: per peer, one non-blocking
        ``send``; the rest (the socket's buffer is full, or the connection went away meanwhile)
        is queued for the writer task as any frame is. Cheap when there is nothing to do."""
        dirty, self._dirty = self._dirty, []
        for peer in dirty:
            frames, peer.direct = peer.direct, []
            peer.direct_bytes = 0
            if peer.removed:
                continue
            data = frames[0] if len(frames) == 1 else b"".join(frames)
            sock = peer.idle_sock
            sent = 0
            if sock is not None:
                try:
                    sent = sock.send(data)
                except BlockingIOError:
                    pass
                except OSError:
                    # The connection broke: the writer task finds out and reconnects. These
                    # frames are lost, as they would be in its send (Raft resends).
                    self._counters.dropped_unreachable += len(frames)
                    continue
            if sent == len(data):
                self._counters.sent += len(frames)
                self._counters.direct_sends += 1
                continue
            # What is left goes first in the queue (it is empty: the writer task was idle; and
            # within its bound, as the frames were), and every later frame goes behind it until
            # the writer task is idle again.
            peer.idle_sock = None
            peer.rest_queued = sent > 0
            self._enqueue(peer, data[sent:], frames=len(frames))

    def _enqueue(self, peer: _Peer, frame: bytes, frames: int = 1) -> None:
        if peer.queued_bytes + len(frame) > self._queue_max_bytes:
            self._counters.dropped_queue_full += frames
            return
        try:
            peer.send_ch.send_nowait(frame)
        except trio.WouldBlock:
            self._counters.dropped_queue_full += frames
            return
        peer.queued_bytes += len(frame)

    def set_peers(self, addresses: Mapping[NodeId, str]) -> None:
        """Entries for this node itself are ignored. Changed addresses restart the peer."""
        wanted = {node_id: address for node_id, address in addresses.items() if node_id != self.node_id}
        for node_id in sorted(self._peers):
            if wanted.get(node_id) != self._peers[node_id].address:
                self._remove_peer(node_id)
        for node_id in sorted(wanted):
            if node_id not in self._peers:
                peer = _Peer(node_id, wanted[node_id], self._queue_max)
                self._peers[node_id] = peer
                if self._nursery is not None:
                    self._nursery.start_soon(self._peer_task, peer)

    def set_cluster_id(self, cluster_id: str | None) -> None:
        self._cluster_id = cluster_id

    # ------------------------------------------------------------------ observation

    @property
    def cluster_id(self) -> str | None:
        return self._cluster_id

    def statistics(self) -> TransportStatistics:
        return TransportStatistics(
            **asdict(self._counters),
            partial_frame_bytes=self._in.partial_bytes,
            inbound_connections=self._in.connections,
            peers=len(self._peers),
            peer_tasks=self._peer_tasks,
            queued_frames=sum(p.send_ch.statistics().current_buffer_used for p in self._peers.values()),
        )

    # ------------------------------------------------------------------ service

    async def run(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and run the peers' writer tasks until cancelled. ``started(listen_port)``
        is reported once bound, so tests can bind port 0."""
        listeners = await trio.open_tcp_listeners(self._bind_port, host=self._bind_host)
        try:
            port = listeners[0].socket.getsockname()[1]
            # Port 0 with a name resolving to several addresses gives each listener its own
            # port; keep those on the first one only, the one we advertise.
            keep = [lst for lst in listeners if lst.socket.getsockname()[1] == port]
            for listener in listeners:
                if listener not in keep:
                    await listener.aclose()
            listeners = keep
        except BaseException:
            for listener in listeners:
                await trio.aclose_forcefully(listener)
            raise
        self.listen_port = port
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                await nursery.start(trio.serve_listeners, self._in.handle, listeners)
                for node_id in sorted(self._peers):
                    nursery.start_soon(self._peer_task, self._peers[node_id])
                task_status.started(port)
        finally:
            self._nursery = None

    def _remove_peer(self, node_id: NodeId) -> None:
        peer = self._peers.pop(node_id)
        peer.removed = True
        if peer.scope is not None:
            peer.scope.cancel()
        peer.send_ch.close()
        peer.recv_ch.close()

    def _wake_peers(self) -> None:
        """An inbound connection arrived: cut every pending reconnect backoff short."""
        for peer in self._peers.values():
            peer.wake.set()

    def _backoff(self, delay_s: float) -> float:
        return self._rng.uniform(delay_s / 2, delay_s)

    async def _peer_task(self, peer: _Peer) -> None:
        if peer.removed:
            return
        self._peer_tasks += 1
        try:
            with trio.CancelScope() as scope:
                peer.scope = scope
                delay_s = self._backoff_min_s
                while True:
                    peer.wake = trio.Event()  # set by an inbound connection from now on
                    stream = await self._connect(peer)
                    if stream is None:
                        self._counters.connect_failures += 1
                        self._discard_queued(peer)
                        await self._backoff_sleep(peer, delay_s)
                        delay_s = min(delay_s * 2, self._backoff_max_s)
                        continue
                    self._counters.connects += 1
                    delay_s = self._backoff_min_s
                    await self._pump(peer, stream)
                    await self._backoff_sleep(peer, delay_s)
        finally:
            peer.scope = None
            self._peer_tasks -= 1

    async def _backoff_sleep(self, peer: _Peer, delay_s: float) -> None:
        """Sleep before the next connection attempt, unless an inbound connection arrived since
        the last attempt began (``_wake_peers``)."""
        with trio.move_on_after(self._backoff(delay_s)):
            await peer.wake.wait()

    async def _connect(self, peer: _Peer) -> trio.abc.Stream | None:
        try:
            host, port = parse_address(peer.address)
        except ValueError:
            return None
        with trio.move_on_after(self._connect_timeout_s):
            try:
                stream = await trio.open_tcp_stream(host, port)
            except OSError:
                return None
            if self._tls is None:
                return stream
            tls_stream = trio.SSLStream(stream, self._tls.client, server_hostname=None)
            try:
                await tls_stream.do_handshake()
            except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
                self._counters.tls_handshake_failures += 1
                await trio.aclose_forcefully(tls_stream)
                return None
            if node_id_of(tls_stream.getpeercert()) != peer.node_id:
                # Another node (or a client certificate) answers at that address: never send it
                # what is meant for peer.node_id.
                self._counters.tls_wrong_peer += 1
                await trio.aclose_forcefully(tls_stream)
                return None
            return tls_stream
        self._counters.tls_handshake_failures += self._tls is not None
        return None

    def _discard_queued(self, peer: _Peer) -> None:
        while True:
            try:
                peer.take_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                return
            self._counters.dropped_unreachable += 1

    async def _pump(self, peer: _Peer, stream: trio.abc.Stream) -> None:
        """Write batches of queued frames until the connection breaks or the peer closes it."""
        try:
            await self._pump_open(peer, stream)
        finally:
            # Forcefully: a graceful TLS close could block on a peer that stopped reading.
            await trio.aclose_forcefully(stream)

    async def _pump_open(self, peer: _Peer, stream: trio.abc.Stream) -> None:
        # Without TLS, a second descriptor of the connection's socket, for flush to write on
        # while this task waits with nothing queued (the bytes of one connection come from one
        # writer at a time: this task, or flush while this task is idle).
        raw = None
        if self._direct_writes and isinstance(stream, trio.SocketStream):
            raw = socket.socket(fileno=os.dup(stream.socket.fileno()))
            raw.setblocking(False)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_for_close, stream, nursery.cancel_scope)
            try:
                while True:
                    try:
                        first = peer.recv_ch.receive_nowait()
                    except trio.WouldBlock:
                        peer.idle_sock = raw
                        try:
                            first = await peer.recv_ch.receive()
                        finally:
                            peer.idle_sock = None
                    peer.queued_bytes -= len(first)
                    peer.rest_queued = False  # if it was the rest of a frame, it goes out now
                    batch = [first]
                    size = len(first)
                    while size < self._batch_max_bytes:
                        try:
                            frame = peer.take_nowait()
                        except trio.WouldBlock:
                            break
                        batch.append(frame)
                        size += len(frame)
                    with trio.move_on_after(self._write_timeout_s) as write_scope:
                        await stream.send_all(first if len(batch) == 1 else b"".join(batch))
                    if write_scope.cancelled_caught:
                        self._counters.write_timeouts += 1
                        break
                    self._counters.sent += len(batch)
            except (trio.BrokenResourceError, trio.ClosedResourceError, trio.EndOfChannel):
                pass
            finally:
                peer.idle_sock = None
                if raw is not None:
                    raw.close()
                if peer.rest_queued:  # the rest of a frame of this connection: drop it and what follows
                    peer.rest_queued = False
                    self._discard_queued(peer)
            nursery.cancel_scope.cancel()

    @staticmethod
    async def _watch_for_close(stream: trio.abc.Stream, scope: trio.CancelScope) -> None:
        # The peer never writes on our outbound connection: EOF, an error or any data at all
        # means the connection is finished, and noticing now saves losing the next batch.
        try:
            await stream.receive_some(4096)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()
