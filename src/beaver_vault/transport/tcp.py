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
``send_all`` per batch. When the connection breaks, it reconnects after a backoff that
doubles from ``backoff_min_s`` to ``backoff_max_s`` on consecutive failures, with jitter
from the injected ``rng``; an inbound connection (a peer coming back) cuts every pending
backoff short, so a restarted member is reconnected at once. After a failed attempt it discards the frames queued meanwhile
(counted as ``dropped_unreachable``): stale heartbeats and appends are worth less than the
bandwidth they would take once the peer is back. A write that makes no progress for
``write_timeout_s`` (a stopped peer) drops the connection too.

Inbound frames are checked in this order, each failure dropped and counted: framing (a
``CodecError`` also closes that connection; the node keeps serving), then handshake messages
(``raft.messages.is_handshake``) pass unconditionally, then Raft messages must carry our
cluster id (none passes while we have none), come from a known peer and be addressed to us.
``deliver`` is called synchronously from the inbound task; an exception in it is a broken
invariant of the owner and propagates.

``set_peers`` adds and removes peers at any time; a removed peer's task is cancelled and its
queue discarded. ``statistics()`` returns a frozen snapshot of the counters.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass

import trio

from beaver_vault.raft.messages import Message, NodeId, is_handshake
from beaver_vault.transport.codec import (
    MAX_ENTRIES_DEFAULT,
    MAX_FRAME_BYTES_DEFAULT,
    CodecError,
    EncodeError,
    FrameDecoder,
    encode_frame,
)

RECEIVE_CHUNK_BYTES = 64 * 1024


def parse_address(address: str) -> tuple[str, int]:
    """``"host:port"`` (or ``"[v6]:port"``) -> ``(host, port)``; ``ValueError`` if malformed."""
    host, sep, port_text = address.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"not a host:port address: {address!r}")
    return host, int(port_text)


@dataclass(frozen=True, slots=True)
class TransportStatistics:
    sent: int  # frames handed to the kernel
    received: int  # messages passed to deliver()
    dropped_queue_full: int
    dropped_no_address: int
    dropped_unencodable: int
    dropped_unreachable: int  # queued frames discarded after a failed connection attempt
    dropped_wrong_cluster: int
    dropped_unknown_sender: int
    dropped_wrong_destination: int
    bad_frames: int  # inbound connections closed for bad framing
    connects: int
    connect_failures: int
    write_timeouts: int
    inbound_rejected: int  # connections refused beyond max_inbound
    inbound_connections: int
    peers: int
    peer_tasks: int  # running writer tasks
    queued_frames: int


@dataclass(slots=True)
class _Counters:
    sent: int = 0
    received: int = 0
    dropped_queue_full: int = 0
    dropped_no_address: int = 0
    dropped_unencodable: int = 0
    dropped_unreachable: int = 0
    dropped_wrong_cluster: int = 0
    dropped_unknown_sender: int = 0
    dropped_wrong_destination: int = 0
    bad_frames: int = 0
    connects: int = 0
    connect_failures: int = 0
    write_timeouts: int = 0
    inbound_rejected: int = 0


class _Peer:
    __slots__ = ("node_id", "address", "send_ch", "recv_ch", "queued_bytes", "scope", "removed", "wake")

    def __init__(self, node_id: NodeId, address: str, queue_max: int) -> None:
        self.node_id = node_id
        self.address = address
        self.send_ch, self.recv_ch = trio.open_memory_channel[bytes](queue_max)
        self.queued_bytes = 0
        self.scope: trio.CancelScope | None = None
        self.removed = False
        self.wake = trio.Event()  # set to cut a reconnect backoff short (a peer came back)

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
        max_inbound: int = 256,
    ) -> None:
        if queue_max < 1 or max_inbound < 1 or not 0 < backoff_min_s <= backoff_max_s:
            raise ValueError("queue_max and max_inbound must be >= 1, 0 < backoff_min_s <= backoff_max_s")
        self.node_id = node_id
        self._bind_host = bind_host
        self._bind_port = bind_port
        self._deliver = deliver
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
        self._max_inbound = max_inbound
        self._peers: dict[NodeId, _Peer] = {}
        self._nursery: trio.Nursery | None = None
        self._counters = _Counters()
        self._inbound = 0
        self._peer_tasks = 0
        self.listen_port: int | None = None

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
        if peer.queued_bytes + len(frame) > self._queue_max_bytes:
            self._counters.dropped_queue_full += 1
            return
        try:
            peer.send_ch.send_nowait(frame)
        except trio.WouldBlock:
            self._counters.dropped_queue_full += 1
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
            inbound_connections=self._inbound,
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
                await nursery.start(trio.serve_listeners, self._handle_inbound, listeners)
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
                    stream = await self._connect(peer.address)
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
        the last attempt began (``_handle_inbound``)."""
        with trio.move_on_after(self._backoff(delay_s)):
            await peer.wake.wait()

    async def _connect(self, address: str) -> trio.SocketStream | None:
        try:
            host, port = parse_address(address)
        except ValueError:
            return None
        with trio.move_on_after(self._connect_timeout_s):
            try:
                return await trio.open_tcp_stream(host, port)
            except OSError:
                return None
        return None

    def _discard_queued(self, peer: _Peer) -> None:
        while True:
            try:
                peer.take_nowait()
            except (trio.WouldBlock, trio.ClosedResourceError, trio.EndOfChannel):
                return
            self._counters.dropped_unreachable += 1

    async def _pump(self, peer: _Peer, stream: trio.SocketStream) -> None:
        """Write batches of queued frames until the connection breaks or the peer closes it."""
        async with stream, trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_for_close, stream, nursery.cancel_scope)
            try:
                while True:
                    first = await peer.recv_ch.receive()
                    peer.queued_bytes -= len(first)
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
            nursery.cancel_scope.cancel()

    @staticmethod
    async def _watch_for_close(stream: trio.SocketStream, scope: trio.CancelScope) -> None:
        # The peer never writes on our outbound connection: EOF, an error or any data at all
        # means the connection is finished, and noticing now saves losing the next batch.
        try:
            await stream.receive_some(4096)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        scope.cancel()

    async def _handle_inbound(self, stream: trio.SocketStream) -> None:
        # serve_listeners closes the stream when this returns.
        if self._inbound >= self._max_inbound:
            self._counters.inbound_rejected += 1
            return
        self._inbound += 1
        # A peer that connects to us is probably back from a restart: retry our connections
        # that are waiting in a backoff now, not up to backoff_max_s later (a leader that
        # cannot reach a restarted follower does not count it towards CheckQuorum).
        for peer in self._peers.values():
            peer.wake.set()
        decoder = FrameDecoder(max_frame_bytes=self._max_frame_bytes, max_entries=self._max_entries)
        try:
            while True:
                try:
                    data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return
                if not data:
                    return
                try:
                    decoded = decoder.feed(data)
                except CodecError:
                    self._counters.bad_frames += 1
                    return
                for cluster_id, msg in decoded:
                    self._accept(cluster_id, msg)
        finally:
            self._inbound -= 1

    def _accept(self, cluster_id: str | None, msg: Message) -> None:
        counters = self._counters
        if not is_handshake(msg):
            if self._cluster_id is None or cluster_id != self._cluster_id:
                counters.dropped_wrong_cluster += 1
                return
            if msg.src not in self._peers:
                counters.dropped_unknown_sender += 1
                return
            if msg.dst != self.node_id:
                counters.dropped_wrong_destination += 1
                return
        counters.received += 1
        self._deliver(msg)
