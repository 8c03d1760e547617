"""The receive side of the TCP transport: inbound connections on the raft port.

Theory of operation
-------------------
``TcpTransport`` serves its listeners with :meth:`Inbound.handle`, one call per connection.
Inbound connections are receive-only: frames are decoded and checked, and the messages that
pass are handed to ``deliver`` synchronously (an exception in it is a broken invariant of the
owner and propagates).

Inbound frames are checked in this order, each failure dropped and counted: framing (a
``CodecError`` also closes that connection; the node keeps serving), then the gate of
``transport.inbound.admit``: an absurd message or one whose ``src`` is not the connection's
sender closes the connection; handshake messages (``raft.messages.is_handshake``) pass; Raft
messages must carry our cluster id (none passes while we have none), come from a known peer
and be addressed to us.

The connection's sender: with mutual TLS, the node id the dialler's certificate names (no
node id: refused); without TLS (development mode) the first message binds it.

Inbound connections are bounded so that no one can starve or bloat the node: at most
``max_inbound`` in all and ``max_inbound_per_host`` from one address (beyond: closed at once,
counted); one that sends nothing for ``idle_timeout_s`` is closed (peers send heartbeats or
reconnect); the TLS handshake has ``handshake_timeout_s``; and the bytes held in incomplete
frames, summed over every inbound connection, stay under ``partial_budget_bytes``: the
connection whose data would exceed it is closed.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Container

import trio

from beaver_vault.raft.messages import Message, NodeId
from beaver_vault.transport import inbound
from beaver_vault.transport.codec import CodecError, FrameDecoder
from beaver_vault.transport.tcp_stats import Counters
from beaver_vault.transport.tls import PeerTls, node_id_of

RECEIVE_CHUNK_BYTES = 64 * 1024


class Inbound:
    """The inbound connections of one ``TcpTransport`` (see the module docstring)."""

    def __init__(
        self,
        node_id: NodeId,
        *,
        counters: Counters,
        deliver: Callable[[Message], None],
        cluster_id: Callable[[], str | None],
        known_senders: Container[NodeId],
        on_connect: Callable[[], None],
        tls: PeerTls | None,
        max_frame_bytes: int,
        max_entries: int,
        max_inbound: int,
        max_inbound_per_host: int,
        idle_timeout_s: float,
        handshake_timeout_s: float,
        partial_budget_bytes: int,
    ) -> None:
        self.node_id = node_id
        self._counters = counters
        self._deliver = deliver
        self._cluster_id = cluster_id
        self._known_senders = known_senders
        self._on_connect = on_connect
        self._tls = tls
        self._max_frame_bytes = max_frame_bytes
        self._max_entries = max_entries
        self._max_inbound = max_inbound
        self._max_inbound_per_host = max_inbound_per_host
        self._idle_timeout_s = idle_timeout_s
        self._handshake_timeout_s = handshake_timeout_s
        self._partial_budget_bytes = partial_budget_bytes
        self._per_host: dict[str, int] = {}
        self.connections = 0  # open now
        self.partial_bytes = 0  # held now in incomplete frames, over every connection

    async def handle(self, stream: trio.SocketStream) -> None:
        # serve_listeners closes the stream when this returns.
        host = _remote_host(stream)
        if self.connections >= self._max_inbound:
            self._counters.inbound_rejected += 1
            return
        if self._per_host.get(host, 0) >= self._max_inbound_per_host:
            self._counters.inbound_rejected_per_host += 1
            return
        self.connections += 1
        # A peer that connects to us is probably back from a restart: retry our connections
        # that are waiting in a backoff now, not up to backoff_max_s later (a leader that
        # cannot reach a restarted follower does not count it towards CheckQuorum).
        self._on_connect()
        self._per_host[host] = self._per_host.get(host, 0) + 1
        try:
            if self._tls is None:
                await self._read_frames(stream, None)
                return
            tls_stream = trio.SSLStream(stream, self._tls.server, server_side=True)
            try:
                with trio.fail_after(self._handshake_timeout_s):
                    await tls_stream.do_handshake()
            except (trio.TooSlowError, trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError):
                self._counters.tls_handshake_failures += 1
                return
            identity = node_id_of(tls_stream.getpeercert())
            if identity is None:
                self._counters.tls_no_identity += 1
                return
            try:
                await self._read_frames(tls_stream, identity)
            finally:
                await trio.aclose_forcefully(tls_stream)
        finally:
            self.connections -= 1
            left = self._per_host[host] - 1
            if left:
                self._per_host[host] = left
            else:
                del self._per_host[host]

    async def _read_frames(self, stream: trio.abc.Stream, identity: NodeId | None) -> None:
        """Decode and admit frames until EOF, an error, silence or a verdict that closes."""
        decoder = FrameDecoder(max_frame_bytes=self._max_frame_bytes, max_entries=self._max_entries)
        held = 0  # this connection's share of self.partial_bytes
        try:
            while True:
                data: bytes | bytearray = b""
                with trio.move_on_after(self._idle_timeout_s) as idle:
                    try:
                        data = await stream.receive_some(RECEIVE_CHUNK_BYTES)
                    except (trio.BrokenResourceError, trio.ClosedResourceError):
                        return
                if idle.cancelled_caught:
                    self._counters.idle_closed += 1
                    return
                if not data:
                    return
                try:
                    decoded = decoder.feed(data)
                except CodecError:
                    self._counters.bad_frames += 1
                    return
                self.partial_bytes += decoder.buffered_bytes - held
                held = decoder.buffered_bytes
                if self.partial_bytes > self._partial_budget_bytes:
                    self._counters.partial_budget_closed += 1
                    return
                for cluster_id, msg in decoded:
                    verdict = self._accept(cluster_id, msg, identity)
                    if verdict in inbound.CLOSE:
                        return
                    if identity is None and verdict == inbound.OK:
                        identity = msg.src  # development mode: the first message binds the sender
        finally:
            self.partial_bytes -= held

    def _accept(self, cluster_id: str | None, msg: Message, identity: NodeId | None) -> str:
        counters = self._counters
        verdict = inbound.admit(
            msg,
            frame_cluster_id=cluster_id,
            identity=identity,
            own_id=self.node_id,
            own_cluster_id=self._cluster_id(),
            known_senders=self._known_senders,
        )
        if verdict == inbound.OK:
            counters.received += 1
            self._deliver(msg)
        elif verdict == inbound.INVALID:
            counters.dropped_invalid += 1
        elif verdict == inbound.IMPOSTOR:
            counters.dropped_impostor += 1
        elif verdict == inbound.WRONG_CLUSTER:
            counters.dropped_wrong_cluster += 1
        elif verdict == inbound.UNKNOWN_SENDER:
            counters.dropped_unknown_sender += 1
        else:
            counters.dropped_wrong_destination += 1
        return verdict


def _remote_host(stream: trio.SocketStream) -> str:
    try:
        address = stream.socket.getpeername()
    except OSError:
        return "?"
    return str(address[0]) if isinstance(address, tuple) else str(address)
