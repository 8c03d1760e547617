"""The raft port against hostile peers, over real loopback sockets (real time, polled waits).

Mutual TLS: only certificates of the cluster's CA naming a node id get in, and a connection
speaks only for the id its certificate names. Without TLS: the first message binds the
connection's sender. Either way: absurd messages close the connection, connections are
capped per address, idle ones are closed, and incomplete frames have a byte budget.
"""

from __future__ import annotations

import ssl
import struct
from pathlib import Path

import pytest
import trio
from test_tcp_transport import LIMIT_S, connect_all, make_node, running, vote, wait_until

from beaver_vault.cli_certs import make_certs
from beaver_vault.raft.messages import AppendRequest, Entry, Message, VoteRequest
from beaver_vault.transport.codec import encode_frame
from beaver_vault.transport.tls import PeerTls, node_id_of, peer_tls


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("certs")
    make_certs(out, ["a", "b", "x"], clients=["alice"])
    make_certs(out / "other", ["a"])  # another CA's certificate for "a"
    return out


def tls_for(certs: Path, name: str, ca: Path | None = None) -> PeerTls:
    return peer_tls(certs / f"{name}.pem", certs / f"{name}-key.pem", ca or certs / "ca.pem")


async def dial(port: int, ctx: ssl.SSLContext) -> trio.SSLStream[trio.SocketStream]:
    stream = trio.SSLStream(await trio.open_tcp_stream("127.0.0.1", port), ctx, server_hostname=None)
    return stream


async def expect_hangup(stream: trio.abc.Stream) -> None:
    with trio.fail_after(LIMIT_S):
        try:
            while await stream.receive_some(1024):
                pass
        except trio.BrokenResourceError:
            pass  # a TLS peer may be cut without close_notify


def test_certificates_name_their_node(certs: Path) -> None:
    ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
    assert ctx.get_ca_certs()
    modes = {p.name: p.stat().st_mode & 0o777 for p in certs.iterdir() if p.is_file()}
    assert modes and set(modes.values()) == {0o600}, modes
    assert certs.stat().st_mode & 0o777 == 0o700
    assert node_id_of({"subjectAltName": (("URI", "beaver-vault://node/a"), ("DNS", "localhost"))}) == "a"
    assert node_id_of({"subjectAltName": (("DNS", "localhost"),)}) is None
    two = {"subjectAltName": (("URI", "beaver-vault://node/a"), ("URI", "beaver-vault://node/b"))}
    assert node_id_of(two) is None


async def test_mutual_tls_nodes_exchange_messages(certs: Path) -> None:
    a = make_node("a", tls=tls_for(certs, "a"))
    b = make_node("b", tls=tls_for(certs, "b"))
    async with running(a, b):
        connect_all(a, b)
        for term in range(1, 21):
            a.t.send(vote("a", "b", term))
        b.t.send(vote("b", "a", 7))
        await wait_until(lambda: len(b.inbox) == 20 and len(a.inbox) == 1)
        assert b.inbox == [vote("a", "b", t) for t in range(1, 21)]
        assert a.inbox == [vote("b", "a", 7)]


async def test_a_member_certificate_cannot_speak_for_another_member(certs: Path) -> None:
    # "x" holds a valid certificate of the cluster's CA, and knows the cluster id: it still
    # cannot send as "a".
    b = make_node("b", tls=tls_for(certs, "b"))
    async with running(b):
        b.t.set_peers({"a": "127.0.0.1:1", "x": "127.0.0.1:1"})
        assert b.t.listen_port is not None
        stream = await dial(b.t.listen_port, tls_for(certs, "x").client)
        async with stream:
            await stream.send_all(encode_frame("c1", AppendRequest(9, "a", "b", 0, 0, (Entry(9, 1, data=b"evil"),), 1)))
            await expect_hangup(stream)
        assert b.stats().dropped_impostor == 1
        # ... but it may speak as itself.
        stream = await dial(b.t.listen_port, tls_for(certs, "x").client)
        async with stream:
            await stream.send_all(encode_frame("c1", vote("x", "b", 3)))
            await wait_until(lambda: len(b.inbox) == 1)
        assert b.inbox == [vote("x", "b", 3)]


@pytest.mark.parametrize("who", ["client", "none", "other-ca"])
async def test_without_a_member_certificate_the_connection_is_refused(certs: Path, who: str) -> None:
    b = make_node("b", tls=tls_for(certs, "b"))
    async with running(b):
        b.t.set_peers({"a": "127.0.0.1:1"})
        assert b.t.listen_port is not None
        ctx = ssl.create_default_context(cafile=str(certs / "ca.pem"))
        ctx.check_hostname = False
        if who == "client":  # a client certificate of the same CA: no node id in it
            ctx.load_cert_chain(certs / "client-alice.pem", certs / "client-alice-key.pem")
        elif who == "other-ca":
            ctx.load_cert_chain(certs / "other" / "a.pem", certs / "other" / "a-key.pem")
        stream = await dial(b.t.listen_port, ctx)
        async with stream:
            try:
                await stream.do_handshake()  # TLS 1.3: the server's verdict may come after this
                await stream.send_all(encode_frame("c1", vote("a", "b")))
            except trio.BrokenResourceError:
                pass
            await expect_hangup(stream)
        stats = b.stats()
        assert stats.tls_no_identity + stats.tls_handshake_failures == 1
        assert (stats.tls_no_identity == 1) == (who == "client")
        assert b.inbox == [] and stats.received == 0


async def test_the_dialler_refuses_a_listener_naming_another_node(certs: Path) -> None:
    a = make_node("a", tls=tls_for(certs, "a"))
    x = make_node("x", tls=tls_for(certs, "x"))
    async with running(a, x):
        a.t.set_peers({"b": x.address})  # "b"'s address is answered by "x"
        a.t.send(vote("a", "b"))
        await wait_until(lambda: a.stats().tls_wrong_peer >= 1)
        assert x.inbox == [] and a.stats().sent == 0


async def test_plain_connection_is_bound_to_its_first_sender() -> None:
    b = make_node("b")
    async with running(b):
        b.t.set_peers({"a": "127.0.0.1:1", "c": "127.0.0.1:1"})
        assert b.t.listen_port is not None
        stream = await trio.open_tcp_stream("127.0.0.1", b.t.listen_port)
        async with stream:
            await stream.send_all(encode_frame("c1", vote("a", "b", 1)) + encode_frame("c1", vote("c", "b", 2)))
            await expect_hangup(stream)
        assert b.inbox == [vote("a", "b", 1)]
        assert b.stats().dropped_impostor == 1


ABSURD: list[Message] = [
    AppendRequest(2, "a", "b", 5, 1, (Entry(1, 9),), 0),  # not contiguous, term going back
    VoteRequest(1, "a", "b", 0, 5),  # last_log_term after term
    VoteRequest(1, "a", "a", 0, 0),  # to itself
]


@pytest.mark.parametrize("msg", ABSURD, ids=lambda m: type(m).__name__)
async def test_absurd_message_closes_the_connection_and_the_node_serves_on(msg: Message) -> None:
    a, b = make_node("a"), make_node("b")
    async with running(a, b):
        connect_all(a, b)
        assert b.t.listen_port is not None
        stream = await trio.open_tcp_stream("127.0.0.1", b.t.listen_port)
        async with stream:
            await stream.send_all(encode_frame("c1", msg))
            await expect_hangup(stream)
        assert b.stats().dropped_invalid == 1 and b.inbox == []
        a.t.send(vote("a", "b", 4))
        await wait_until(lambda: b.inbox == [vote("a", "b", 4)])


def raw_vote_with_term(term: int) -> bytes:
    body = struct.pack(">BB", 1, 1) + struct.pack(">H", 2) + b"c1" + struct.pack(">QQQB", term, 0, 0, 0)
    body += struct.pack(">H", 1) + b"a" + struct.pack(">H", 1) + b"b"
    return struct.pack(">I", len(body)) + body


async def test_terms_beyond_storage_are_bad_frames() -> None:
    b = make_node("b")
    async with running(b):
        b.t.set_peers({"a": "127.0.0.1:1"})
        assert b.t.listen_port is not None
        for term in (2**63, 2**63 - 1):
            stream = await trio.open_tcp_stream("127.0.0.1", b.t.listen_port)
            async with stream:
                await stream.send_all(raw_vote_with_term(term))
                await expect_hangup(stream)
        assert b.stats().bad_frames == 2 and b.inbox == []


async def test_connections_per_address_are_capped() -> None:
    b = make_node("b", max_inbound_per_host=2)
    async with running(b):
        assert b.t.listen_port is not None
        one = await trio.open_tcp_stream("127.0.0.1", b.t.listen_port)
        two = await trio.open_tcp_stream("127.0.0.1", b.t.listen_port)
        async with one, two:
            await wait_until(lambda: b.stats().inbound_connections == 2)
            three = await trio.open_tcp_stream("127.0.0.1", b.t.listen_port)
            async with three:
                await expect_hangup(three)
            assert b.stats().inbound_rejected_per_host == 1
        await wait_until(lambda: b.stats().inbound_connections == 0)


async def test_idle_connections_are_closed() -> None:
    b = make_node("b", idle_timeout_s=0.2)
    async with running(b):
        assert b.t.listen_port is not None
        stream = await trio.open_tcp_stream("127.0.0.1", b.t.listen_port)
        async with stream:
            await stream.send_all(b"\x00\x00")  # half a length prefix, then nothing
            await expect_hangup(stream)
        assert b.stats().idle_closed == 1


async def test_partial_frames_have_a_byte_budget() -> None:
    budget = 256 * 1024
    b = make_node("b", partial_budget_bytes=budget)
    async with running(b):
        assert b.t.listen_port is not None
        streams = [await trio.open_tcp_stream("127.0.0.1", b.t.listen_port) for _ in range(4)]
        piece = struct.pack(">I", 15 * 1024 * 1024) + b"\x01" * (100 * 1024)  # a 15 MiB frame, begun
        try:
            for s in streams:
                try:
                    await s.send_all(piece)
                except trio.BrokenResourceError:
                    pass
            await wait_until(lambda: b.stats().partial_budget_closed >= 2)
            stats = b.stats()
            assert stats.partial_frame_bytes <= budget
        finally:
            for s in streams:
                await s.aclose()
        await wait_until(lambda: b.stats().partial_frame_bytes == 0)


async def test_limits_are_validated() -> None:
    for bad in ({"max_inbound_per_host": 0}, {"idle_timeout_s": 0}, {"partial_budget_bytes": 0}):
        with pytest.raises(ValueError):
            make_node("z", **bad)


