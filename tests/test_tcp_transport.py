"""The TCP transport over real loopback sockets (so real time, never autojump_clock).

Every wait polls a condition under a generous ``trio.fail_after``; no test asserts a time.
"""

from __future__ import annotations

import random
import struct
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
import trio

from beaver_vault.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    Message,
    ProbeRequest,
    VoteRequest,
)
from beaver_vault.transport.codec import encode_frame
from beaver_vault.transport.tcp import TcpTransport, TransportStatistics, parse_address

LIMIT_S = 20  # safety net only


class Node:
    def __init__(self, transport: TcpTransport, inbox: list[Message]) -> None:
        self.t = transport
        self.inbox = inbox

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.t.listen_port}"

    def stats(self) -> TransportStatistics:
        return self.t.statistics()


def make_node(node_id: str, *, cluster_id: str | None = "c1", port: int = 0, **kw: object) -> Node:
    inbox: list[Message] = []
    transport = TcpTransport(
        node_id,
        bind_host="127.0.0.1",
        bind_port=port,
        deliver=inbox.append,
        cluster_id=cluster_id,
        rng=random.Random(node_id),
        backoff_min_s=0.01,
        backoff_max_s=0.1,
        **kw,  # type: ignore[arg-type]
    )
    return Node(transport, inbox)


@asynccontextmanager
async def running(*nodes: Node) -> AsyncIterator[trio.Nursery]:
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.t.run)
        yield nursery
        nursery.cancel_scope.cancel()


def connect_all(*nodes: Node) -> None:
    book = {n.t.node_id: n.address for n in nodes}
    for node in nodes:
        node.t.set_peers(book)


async def wait_until(cond: Callable[[], bool]) -> None:
    with trio.fail_after(LIMIT_S):
        while not cond():
            await trio.sleep(0.005)


def vote(src: str, dst: str, term: int = 1) -> VoteRequest:
    return VoteRequest(term, src, dst, last_log_index=0, last_log_term=0)


async def send_raw(port: int, data: bytes, *, expect_hangup: bool = True) -> None:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(data)
        if expect_hangup:  # bad framing: the transport closes the connection
            with trio.fail_after(LIMIT_S):
                assert await stream.receive_some(1024) == b""


def test_parse_address() -> None:
    assert parse_address("localhost:7001") == ("localhost", 7001)
    assert parse_address("[::1]:7000") == ("::1", 7000)
    for bad in ["localhost", ":7000", "host:", "host:70000", "host:x1"]:
        with pytest.raises(ValueError):
            parse_address(bad)


async def test_two_nodes_exchange_messages_in_order() -> None:
    a, b = make_node("a"), make_node("b")
    async with running(a, b):
        connect_all(a, b)
        for term in range(1, 101):
            a.t.send(vote("a", "b", term))
        b.t.send(AppendResponse(1, "b", "a", success=True, match_index=5))
        await wait_until(lambda: len(b.inbox) == 100 and len(a.inbox) == 1)
        assert b.inbox == [vote("a", "b", term) for term in range(1, 101)]
        assert a.inbox == [AppendResponse(1, "b", "a", success=True, match_index=5)]
        await wait_until(lambda: a.stats().sent == 100)  # counted after send_all returns
        assert b.stats().received == 100
        assert a.stats().connects == 1


async def test_three_nodes_and_a_large_append() -> None:
    nodes = [make_node(n) for n in ("n1", "n2", "n3")]
    entries = tuple(Entry(2, i, data=bytes([i % 256]) * 1000) for i in range(1, 501))
    async with running(*nodes):
        connect_all(*nodes)
        for src in nodes:
            for dst in nodes:
                if src is not dst:
                    src.t.send(AppendRequest(2, src.t.node_id, dst.t.node_id, 0, 0, entries, 0))
        await wait_until(lambda: all(len(n.inbox) == 2 for n in nodes))
        for node in nodes:
            assert {m.src for m in node.inbox} == {n.t.node_id for n in nodes} - {node.t.node_id}
            assert all(isinstance(m, AppendRequest) and m.entries == entries for m in node.inbox)


async def test_localhost_addresses_work() -> None:
    a, b = make_node("a"), make_node("b")
    async with running(a, b):
        a.t.set_peers({"b": f"localhost:{b.t.listen_port}"})
        b.t.set_peers({"a": f"localhost:{a.t.listen_port}"})
        a.t.send(vote("a", "b"))
        await wait_until(lambda: len(b.inbox) == 1)


async def test_unknown_destination_and_queue_overflow_are_counted() -> None:
    a = make_node("a", queue_max=4)
    # A peer whose address nobody listens on: the writer keeps failing to connect.
    a.t.set_peers({"b": "127.0.0.1:1"})
    a.t.send(vote("a", "nobody"))
    for term in range(10):
        a.t.send(vote("a", "b", term))
    stats = a.stats()
    assert stats.dropped_no_address == 1
    assert stats.dropped_queue_full == 6
    assert stats.queued_frames == 4
    async with running(a):
        await wait_until(lambda: a.stats().connect_failures >= 2)
        # Frames queued for an unreachable peer are discarded, not kept forever.
        assert a.stats().dropped_unreachable == 4
        assert a.stats().queued_frames == 0


async def test_garbage_and_oversized_frames_are_counted_and_the_node_keeps_serving() -> None:
    a, b = make_node("a", max_frame_bytes=4096), make_node("b")
    async with running(a, b):
        connect_all(a, b)
        port = a.t.listen_port
        assert port is not None
        await send_raw(port, b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        await send_raw(port, struct.pack(">I", 2**31) + b"\x01\x01")  # length beyond max_frame_bytes
        await send_raw(port, struct.pack(">I", 5) + b"\x09\x01abc")  # unknown version
        await wait_until(lambda: a.stats().bad_frames == 3)
        # A truncated frame followed by a hang-up is not a framing error, just nothing.
        await send_raw(port, encode_frame("c1", vote("b", "a"))[:-1], expect_hangup=False)
        b.t.send(vote("b", "a"))
        await wait_until(lambda: len(a.inbox) == 1)
        assert a.stats().bad_frames == 3
        assert a.stats().inbound_connections == 1  # only b's connection is left


async def test_wrong_cluster_is_dropped_and_handshakes_pass() -> None:
    a, b = make_node("a", cluster_id="c1"), make_node("b", cluster_id="other")
    async with running(a, b):
        connect_all(a, b)
        b.t.send(vote("b", "a"))
        b.t.send(ProbeRequest("b", "a", nonce=7))
        await wait_until(lambda: len(a.inbox) == 1)
        assert a.inbox == [ProbeRequest("b", "a", nonce=7)]
        await wait_until(lambda: a.stats().dropped_wrong_cluster == 1)
        # Once b takes a's cluster id its Raft messages pass.
        b.t.set_cluster_id("c1")
        b.t.send(vote("b", "a", term=3))
        await wait_until(lambda: len(a.inbox) == 2)
        assert a.inbox[1] == vote("b", "a", term=3)


async def test_without_a_cluster_id_only_handshakes_pass() -> None:
    a, b = make_node("a", cluster_id=None), make_node("b", cluster_id=None)
    async with running(a, b):
        connect_all(a, b)
        b.t.send(vote("b", "a"))
        b.t.send(ProbeRequest("b", "a", nonce=1))
        await wait_until(lambda: len(a.inbox) == 1 and a.stats().dropped_wrong_cluster == 1)
        assert isinstance(a.inbox[0], ProbeRequest)


async def test_unknown_sender_and_wrong_destination_are_dropped() -> None:
    a, b = make_node("a"), make_node("b")
    async with running(a, b):
        b.t.set_peers({"a": a.address})  # a does not know b
        b.t.send(vote("b", "a"))
        b.t.send(ProbeRequest("b", "a", nonce=2))  # handshakes come from strangers by design
        await wait_until(lambda: len(a.inbox) == 1 and a.stats().dropped_unknown_sender == 1)
        a.t.set_peers({"b": b.address})
        # A frame claiming to be for someone else, sent by b's transport under a's address.
        b.t.set_peers({"a": a.address, "z": a.address})
        b.t.send(vote("b", "z"))
        await wait_until(lambda: a.stats().dropped_wrong_destination == 1)


async def test_reconnects_after_the_peer_restarts() -> None:
    a, b = make_node("a"), make_node("b")
    async with running(a):
        async with trio.open_nursery() as b_nursery:
            await b_nursery.start(b.t.run)
            connect_all(a, b)
            a.t.send(vote("a", "b", 1))
            await wait_until(lambda: len(b.inbox) == 1)
            b_nursery.cancel_scope.cancel()
        b_port = b.t.listen_port
        assert b_port is not None
        # b is gone: a notices the closed connection and fails to reconnect for a while.
        await wait_until(lambda: a.stats().connect_failures >= 1)
        b2 = make_node("b", port=b_port)
        async with running(b2):
            b2.t.set_peers({"a": a.address})
            # a's heartbeat loop, as Raft would do: resend until one arrives.
            with trio.fail_after(LIMIT_S):
                while not b2.inbox:
                    a.t.send(vote("a", "b", 2))
                    await trio.sleep(0.01)
            assert b2.inbox[0] == vote("a", "b", 2)
            assert a.stats().connects >= 2


async def test_set_peers_removal_stops_the_peer_task() -> None:
    a, b = make_node("a"), make_node("b")
    async with running(a, b):
        connect_all(a, b)
        a.t.send(vote("a", "b"))
        await wait_until(lambda: len(b.inbox) == 1)
        assert a.stats().peer_tasks == 1
        a.t.set_peers({})
        await wait_until(lambda: a.stats().peer_tasks == 0)
        await wait_until(lambda: b.stats().inbound_connections == 0)
        a.t.send(vote("a", "b"))
        assert a.stats().dropped_no_address == 1
        # Adding it back starts a fresh task and connection.
        a.t.set_peers({"b": b.address})
        a.t.send(vote("a", "b", 5))
        await wait_until(lambda: len(b.inbox) == 2)
        assert a.stats().peer_tasks == 1


async def test_address_change_moves_the_peer() -> None:
    a, b, c = make_node("a"), make_node("b"), make_node("b")  # c: "b" moved to a new port
    async with running(a, b, c):
        b.t.set_peers({"a": a.address})
        c.t.set_peers({"a": a.address})
        a.t.set_peers({"b": b.address})
        a.t.send(vote("a", "b", 1))
        await wait_until(lambda: len(b.inbox) == 1)
        a.t.set_peers({"b": c.address})
        a.t.send(vote("a", "b", 2))
        await wait_until(lambda: len(c.inbox) == 1)
        assert len(b.inbox) == 1


async def test_unencodable_message_is_dropped_not_raised() -> None:
    a, b = make_node("a"), make_node("b")
    async with running(a, b):
        connect_all(a, b)
        a.t.send(VoteRequest(-1, "a", "b", 0, 0))
        assert a.stats().dropped_unencodable == 1


async def test_inbound_connection_limit() -> None:
    a = make_node("a", max_inbound=1)
    async with running(a):
        port = a.t.listen_port
        assert port is not None
        first = await trio.open_tcp_stream("127.0.0.1", port)
        async with first:
            await wait_until(lambda: a.stats().inbound_connections == 1)
            second = await trio.open_tcp_stream("127.0.0.1", port)
            async with second:
                with trio.fail_after(LIMIT_S):
                    assert await second.receive_some(10) == b""  # closed at once
            assert a.stats().inbound_rejected == 1


async def test_an_inbound_connection_cuts_a_reconnect_backoff_short() -> None:
    # a backs off for a minute after a failed attempt: only the wake-up on b's inbound
    # connection can get a's frames to the restarted b within the test's limit.
    a = make_node("a")
    a.t._backoff_min_s = a.t._backoff_max_s = 60.0
    b = make_node("b")
    async with running(a):
        async with trio.open_nursery() as b_nursery:
            await b_nursery.start(b.t.run)
            connect_all(a, b)
            a.t.send(vote("a", "b", 1))
            await wait_until(lambda: len(b.inbox) == 1)
            b_nursery.cancel_scope.cancel()
        b_port = b.t.listen_port
        assert b_port is not None
        # a now sleeps in its minute-long backoff (or will, once it notices b is gone).
        b2 = make_node("b", port=b_port)
        async with running(b2):
            b2.t.set_peers({"a": a.address})
            b2.t.send(vote("b", "a", 2))  # b2's connection to a wakes a's writer
            await wait_until(lambda: len(a.inbox) == 1)
            with trio.fail_after(LIMIT_S):
                while not b2.inbox:
                    a.t.send(vote("a", "b", 3))
                    await trio.sleep(0.01)
            assert b2.inbox[0] == vote("a", "b", 3)


# --- direct writes: frames sent while the writer task is idle, written by flush -------------------


async def test_direct_writes_are_kept_for_flush_and_written_in_one_send() -> None:
    a, b = make_node("a", direct_writes=True), make_node("b")
    async with running(a, b):
        connect_all(a, b)
        a.t.send(vote("a", "b", 1))  # not connected yet: queued for the writer task, as always
        a.t.flush()
        await wait_until(lambda: len(b.inbox) == 1 and a.stats().sent == 1)
        assert a.stats().direct_sends == 0
        for term in (2, 3, 4):
            a.t.send(vote("a", "b", term))
        # Kept aside: nothing is written (nor counted) before the owner flushes.
        assert (a.stats().sent, a.stats().direct_sends, a.stats().queued_frames) == (1, 0, 0)
        a.t.flush()
        assert (a.stats().sent, a.stats().direct_sends) == (4, 1)  # three frames, one send
        await wait_until(lambda: len(b.inbox) == 4)
        assert b.inbox == [vote("a", "b", term) for term in range(1, 5)]
        a.t.flush()  # nothing kept: nothing written
        assert a.stats().direct_sends == 1


async def test_without_direct_writes_flush_has_nothing_to_do() -> None:
    a, b = make_node("a"), make_node("b")
    async with running(a, b):
        connect_all(a, b)
        a.t.send(vote("a", "b", 1))
        await wait_until(lambda: len(b.inbox) == 1)
        a.t.send(vote("a", "b", 2))  # the writer task is idle, but direct writes are off
        a.t.flush()
        await wait_until(lambda: len(b.inbox) == 2)
        assert a.stats().direct_sends == 0


async def silent_peer(nursery: trio.Nursery, a: Node, *, rcvbuf: int | None = None) -> trio.SocketStream:
    """Point ``a``'s peer "b" at a listener that accepts and never reads by itself, have ``a``
    write one vote there, and return the accepted stream once ``a``'s writer task is idle."""
    import socket

    accepted: list[trio.SocketStream] = []
    got = trio.Event()

    async def hold(stream: trio.SocketStream) -> None:
        if rcvbuf is not None:
            stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        accepted.append(stream)
        got.set()
        await trio.sleep_forever()

    listeners = await nursery.start(trio.serve_tcp, hold, 0)
    port = listeners[0].socket.getsockname()[1]
    a.t.set_peers({"b": f"127.0.0.1:{port}"})
    with trio.fail_after(LIMIT_S):
        await got.wait()
    a.t.send(vote("a", "b"))  # once it is written (whichever way), the writer task is idle
    a.t.flush()
    await wait_until(lambda: a.stats().sent == 1)
    return accepted[0]


async def test_direct_writes_to_a_slow_reader_keep_the_stream_in_order() -> None:
    """A peer that reads slowly fills the socket: flush writes what the kernel takes and queues
    the rest, later frames go behind it (even when the socket has room again before the writer
    task has run), and the byte stream the peer reads is every frame, whole and in order."""
    import os
    import socket

    from beaver_vault.transport.codec import FrameDecoder

    a = make_node("a", direct_writes=True)
    payload = b"x" * 64 * 1024
    total = 300
    decoder = FrameDecoder()
    frames: list[object] = []
    async with running(a) as nursery:
        accepted = await silent_peer(nursery, a)
        # The reader's side, read without yielding to Trio (so the writer task cannot run between
        # a read that makes room and the next flush).
        rx = socket.socket(fileno=os.dup(accepted.socket.fileno()))
        rx.setblocking(False)
        try:
            for i in range(1, total + 1):
                a.t.send(AppendRequest(1, "a", "b", i - 1, 1, (Entry(1, i, data=payload),), 0))
                a.t.flush()
                try:
                    frames.extend(decoder.feed(rx.recv(48 * 1024)))
                except BlockingIOError:
                    pass
                if i % 7 == 0:  # the writer task runs between some flushes, not all
                    await trio.sleep(0)
        finally:
            rx.close()
        assert 0 < a.stats().direct_sends < total  # some went straight out, some through the queue
        with trio.fail_after(LIMIT_S):
            while len(frames) < total + 1:
                frames.extend(decoder.feed(await accepted.receive_some(1 << 20)))
        assert frames.pop(0) == ("c1", vote("a", "b"))
        indices = [msg.entries[0].index for _cluster, msg in frames]  # type: ignore[attr-defined]
        assert indices == list(range(1, total + 1))
        assert all(msg.entries[0].data == payload for _cluster, msg in frames)  # type: ignore[attr-defined]
        await wait_until(lambda: a.stats().sent == total + 1)
        assert a.stats().dropped_queue_full == 0


async def test_the_rest_of_a_frame_is_dropped_with_its_connection_never_sent_on_the_next() -> None:
    """White-box: the race the public interface cannot force. The connection's writer task is
    cancelled (its connection ends) while idle, ``flush`` writes part of a frame in the same
    moment, and the rest is queued; the writer task then drops that rest (and what follows it)
    instead of leaving it for the next connection, whose stream would start mid-frame."""
    import socket

    a = make_node("a", direct_writes=True)
    async with running(a) as nursery:
        await silent_peer(nursery, a, rcvbuf=4096)
        peer = a.t._peers["b"]
        assert peer.idle_sock is not None and peer.scope is not None
        peer.idle_sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        dropped, direct = a.stats().dropped_unreachable, a.stats().direct_sends
        peer.scope.cancel()  # the writer task's wait is aborted now; it runs at the next checkpoint
        a.t.send(AppendRequest(1, "a", "b", 0, 0, (Entry(1, 1, data=b"x" * (4 << 20)),), 0))
        a.t.flush()  # the kernel takes part of 4 MiB; the rest is queued
        assert a.stats().queued_frames == 1 and a.stats().direct_sends == direct  # written in part only
        await wait_until(lambda: a.stats().queued_frames == 0)
        assert a.stats().dropped_unreachable == dropped + 1
