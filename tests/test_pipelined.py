"""The pipelined client protocol (docs/protocol.md) on real processes: the same operations,
errors and outcomes as HTTP, idempotency, watches, bad frames, a follower forwarding to the
leader, many Trio tasks sharing one client, and the client's fallback to HTTP.

One 3-node cluster serves the module (starting clusters is the slow part); tests use keys of
their own. A single node with tight limits covers the per-connection limits.
"""

from __future__ import annotations

import json
import socket
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from e2e_cluster import Cluster, Node

from beaver_vault import wire
from beaver_vault.client import AsyncClient, Client
from beaver_vault.client._pipelined import AsyncPipe, PipeRefused, split_address
from beaver_vault.client.errors import ClusterError, PreconditionFailed

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("pipelined") / "cluster")
    try:
        c.start_cluster(3)
        yield c
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def leader_and_follower(c: Cluster) -> tuple[Node, Node]:
    leader = c.wait_leader()
    follower = next(n for n in c.live() if n.node_id != leader.node_id)
    return leader, follower


def address(node: Node) -> str:
    st = node.status()
    assert st is not None
    addr = st.get("pipelined_address")
    assert isinstance(addr, str), st
    return addr


class Raw:
    """A blocking raw connection: frames as the protocol defines them, nothing more."""

    def __init__(self, addr: str, *, hello: bool = True) -> None:
        host, port = split_address(addr)
        self.sock = socket.create_connection((host, port), timeout=10)
        self.reader = wire.FrameReader(16 * 1024 * 1024)
        self.pending: list[tuple[dict[str, Any], bytes | None]] = []
        if hello:
            self.sock.sendall(wire.hello())
            header, _ = self.recv()
            assert header["hello"] == "beaver-vault" and header["version"] == 1, header

    def send(self, header: dict[str, Any], body: bytes | None = None) -> None:
        self.sock.sendall(wire.encode(header, body))

    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> tuple[dict[str, Any], bytes | None]:
        while not self.pending:
            for payload, _ in self.reader.frames():
                assert payload is not None
                self.pending.append(wire.decode(payload))
            if self.pending:
                break
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed")
            self.reader.feed(data)
        return self.pending.pop(0)

    def call(self, header: dict[str, Any], body: bytes | None = None) -> tuple[dict[str, Any], Any]:
        self.send(header, body)
        answer, data = self.recv()
        return answer, (json.loads(data) if data else None)

    def close(self) -> None:
        self.sock.close()


def http(node: Node, method: str, path: str, **kw: Any) -> httpx.Response:
    return httpx.request(method, node.url + "/api/v1" + path, timeout=10, **kw)


def test_status_advertises_the_port_and_hello_negotiates(cluster: Cluster) -> None:
    for node in cluster.live():
        raw = Raw(address(node), hello=False)
        raw.send_raw(wire.hello(versions=(7, 1), client="t"))
        header, _ = raw.recv()
        assert header["version"] == 1 and header["node_id"] == node.node_id and header["auth"] == "off"
        raw.close()
    # Requests sent right behind the hello, in the same packet, are answered.
    raw = Raw(address(cluster.wait_leader()), hello=False)
    raw.send_raw(wire.hello() + wire.encode({"id": 1, "op": "get", "key": "hello/none"}))
    assert raw.recv()[0]["version"] == 1
    h, _ = raw.recv()
    assert (h["id"], h["status"]) == (1, 404)
    raw.close()
    # No common version: an error frame naming the versions on offer, then the server closes.
    raw = Raw(address(cluster.wait_leader()), hello=False)
    raw.send({"hello": "beaver-vault", "versions": [99]})
    header, body = raw.recv()
    assert header["status"] == 400 and json.loads(body or b"")["versions"] == [1]
    with pytest.raises(ConnectionError):
        raw.recv()
    raw.close()


def test_operations_answer_as_http_does(cluster: Cluster) -> None:
    leader, _ = leader_and_follower(cluster)
    raw = Raw(address(leader))
    h, body = raw.call({"id": 1, "op": "put", "key": "ops/a"}, b'{"x": 1}')
    assert h["status"] == 200 and body["key"] == "ops/a" and body["created"] is True
    rev = body["revision"]
    assert h["h"]["etag"] == f'"{rev}"'
    h, body = raw.call({"id": 2, "op": "get", "key": "ops/a"})
    assert (h["status"], body) == (200, {"x": 1})
    assert h["h"]["x-beaver-vault-consistency"] == "linearizable"
    # The same read over HTTP: same status and body.
    r = http(leader, "GET", "/kv/ops/a?meta=true")
    h, body = raw.call({"id": 3, "op": "get", "key": "ops/a", "q": {"meta": "true"}})
    assert (h["status"], body) == (r.status_code, r.json())
    # A conditional write that does not hold: 412, not_applied, the current revision.
    h, body = raw.call({"id": 4, "op": "put", "key": "ops/a", "h": {"if-match": '"1"'}}, b"2")
    r = http(leader, "PUT", "/kv/ops/a", content=b"2", headers={"If-Match": '"1"'})
    assert h["status"] == r.status_code == 412
    assert body == r.json() and body["outcome"] == "not_applied" and body["current_revision"] == rev
    # If-None-Match: * on an existing key.
    h, body = raw.call({"id": 5, "op": "put", "key": "ops/a", "h": {"if-none-match": "*"}}, b"3")
    assert h["status"] == 412 and body["outcome"] == "not_applied"
    # A TTL, a bad TTL, a missing key, a bad key, a bad body.
    h, body = raw.call({"id": 6, "op": "put", "key": "ops/t", "q": {"ttl": "30s"}}, b"1")
    assert h["status"] == 200
    h, body = raw.call({"id": 7, "op": "get", "key": "ops/t", "q": {"meta": "true"}})
    assert isinstance(body.get("expires_at_ms"), int)
    for i, (header, data) in enumerate(
        [
            ({"op": "put", "key": "ops/t", "q": {"ttl": "soon"}}, b"1"),
            ({"op": "put", "key": "ops/b"}, b"{not json"),
            ({"op": "get", "key": "ops/a", "q": {"consistency": "eventual"}}, None),
            ({"op": "put", "key": ""}, b"1"),
            ({"op": "frobnicate"}, None),
            ({"op": "put"}, b"1"),
        ]
    ):
        h, body = raw.call({"id": 100 + i, **header}, data)
        assert h["status"] == 400 and body["outcome"] == "not_applied" and body["error"], (header, h, body)
    h, body = raw.call({"id": 8, "op": "get", "key": "ops/none"})
    r = http(leader, "GET", "/kv/ops/none")
    assert h["status"] == 404 and body == r.json()
    # Delete, list, prefix delete, transaction: each as HTTP answers it.
    h, body = raw.call({"id": 9, "op": "delete", "key": "ops/t"})
    assert h["status"] == 200 and body["deleted"] is True
    raw.call({"id": 10, "op": "put", "key": "ops/l/1"}, b"1")
    raw.call({"id": 11, "op": "put", "key": "ops/l/2"}, b"2")
    h, body = raw.call({"id": 12, "op": "list", "q": {"prefix": "ops/l/"}})
    r = http(leader, "GET", "/kv", params={"prefix": "ops/l/"})
    assert h["status"] == 200 and [i["key"] for i in body["items"]] == ["ops/l/1", "ops/l/2"]
    assert body["items"] == r.json()["items"] and body["count"] == 2
    txn = {"compare": [{"key": "ops/l/1", "target": "value", "op": "==", "value": 1}], "success": [{"op": "put", "key": "ops/l/3", "value": 3}], "failure": []}
    h, body = raw.call({"id": 13, "op": "txn"}, json.dumps(txn).encode())
    assert h["status"] == 200 and body["succeeded"] is True, body
    h, body = raw.call({"id": 14, "op": "delete_prefix", "q": {"prefix": "ops/l/"}})
    assert h["status"] == 400  # confirm=true is needed, as over HTTP
    h, body = raw.call({"id": 15, "op": "delete_prefix", "q": {"prefix": "ops/l/", "confirm": "true"}})
    assert h["status"] == 200 and body["deleted"] == 3
    raw.close()


def test_idempotency_key_replays_the_first_answer(cluster: Cluster) -> None:
    leader, follower = leader_and_follower(cluster)
    raw = Raw(address(follower))
    headers = {"idempotency-key": "idem-1", "x-beaver-vault-client": "tester"}
    h1, b1 = raw.call({"id": 1, "op": "put", "key": "idem/a", "h": headers}, b"1")
    h2, b2 = raw.call({"id": 2, "op": "put", "key": "idem/a", "h": headers}, b"1")
    assert h1["status"] == h2["status"] == 200 and b1 == b2
    assert "idempotency-replayed" not in h1.get("h", {}) and h2["h"]["idempotency-replayed"] == "true"
    h, body = raw.call({"id": 3, "op": "get", "key": "idem/a", "q": {"meta": "true"}})
    assert body["version"] == 1  # applied once
    raw.close()


def test_bad_frames_get_error_frames_and_the_connection_goes_on(cluster: Cluster) -> None:
    leader, _ = leader_and_follower(cluster)
    raw = Raw(address(leader))
    # A long write in flight while bad frames arrive: it is answered all the same.
    raw.send({"id": 1, "op": "put", "key": "bad/ok"}, b'"still here"')
    raw.send_raw(struct.pack(">I", 9) + b"not json!")
    raw.send_raw(struct.pack(">I", 2) + b"[]")
    raw.send({"op": "get", "key": "bad/ok"})  # no id
    raw.send({"id": "seven", "op": "get", "key": "bad/ok"})
    big = 4 * 1024 * 1024
    raw.send_raw(struct.pack(">I", big) + b"x" * big)  # over the frame limit: skipped unread
    answers = [raw.recv() for _ in range(6)]
    by_id = {h.get("id"): (h, b) for h, b in answers if h.get("id") is not None}
    assert by_id[1][0]["status"] == 200
    errors = [(h, json.loads(b or b"")) for h, b in answers if h.get("id") is None]
    assert sorted(h["status"] for h, _ in errors) == [400, 400, 400, 400, 413]
    assert all(b["outcome"] == "not_applied" and b["error"] for _, b in errors)
    # Same connection, still in step.
    h, body = raw.call({"id": 2, "op": "get", "key": "bad/ok"})
    assert (h["status"], body) == (200, "still here")
    # An id already in flight: an error for the duplicate only.
    raw.send({"id": 3, "op": "watch", "q": {"prefix": "bad/none/"}})
    assert raw.recv()[0]["more"] is True
    raw.send({"id": 3, "op": "get", "key": "bad/ok"})
    h, _ = raw.recv()
    assert (h["id"], h["status"]) == (3, 400)
    raw.close()
    # Clients that vanish: mid-frame with a reset, and with requests in flight unread.
    for _ in range(3):
        gone = Raw(address(leader))
        gone.send({"id": 1, "op": "put", "key": "bad/gone"}, b"1")
        gone.send({"id": 2, "op": "watch"})
        gone.send_raw(struct.pack(">I", 100) + b'{"id": 3')
        gone.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        gone.close()
    garbage = Raw(address(leader), hello=False)
    garbage.send_raw(b"\x16\x03\x01 not a hello, maybe TLS")
    garbage.close()
    # The node is fine.
    assert http(leader, "GET", "/kv/bad/ok").json() == "still here"
    check = Raw(address(leader))
    assert check.call({"id": 1, "op": "get", "key": "bad/ok"})[1] == "still here"
    check.close()
    assert all(n.alive() for n in cluster.live())
    metrics = httpx.get(leader.url + "/metrics", timeout=10).text
    bad = [line for line in metrics.splitlines() if line.startswith("beaver_vault_pipelined_bad_frames{")]
    assert bad and float(bad[0].split()[-1]) >= 5  # counted for operators


def test_watch_streams_frames_and_cancel_ends_it(cluster: Cluster) -> None:
    leader, follower = leader_and_follower(cluster)
    raw = Raw(address(follower))
    raw.send({"id": 1, "op": "watch", "q": {"prefix": "w/"}})
    h, body = raw.recv()
    assert h["more"] is True and body == b"[]"
    writer = Raw(address(leader))
    writer.call({"id": 1, "op": "put", "key": "w/a"}, b"1")
    writer.call({"id": 2, "op": "delete", "key": "w/a"})
    seen: list[dict[str, Any]] = []
    while len(seen) < 2:
        h, body = raw.recv()
        assert h["id"] == 1 and h["more"] is True
        seen.extend(json.loads(body or b""))
    assert [(e["type"], e["key"]) for e in seen] == [("put", "w/a"), ("delete", "w/a")]
    assert seen[0]["value"] == 1 and seen[1]["revision"] > seen[0]["revision"]
    # Resume from the first event's revision: both again.
    raw.send({"id": 2, "op": "watch", "q": {"prefix": "w/", "from_revision": str(seen[0]["revision"])}})
    replay: list[dict[str, Any]] = []
    while len(replay) < 2:
        h, body = raw.recv()
        if h["id"] == 2:
            replay.extend(json.loads(body or b""))
    assert [e["revision"] for e in replay] == [e["revision"] for e in seen]
    raw.send({"id": 3, "op": "cancel", "target": 1})
    answers = {raw.recv()[0]["id"] for _ in range(2)}
    assert answers == {1, 3}
    raw.close()
    writer.close()


def test_follower_forwards_writes_to_the_leader(cluster: Cluster) -> None:
    leader, follower = leader_and_follower(cluster)
    raw = Raw(address(follower))
    for i in range(20):
        raw.send({"id": i, "op": "put", "key": f"fwd/{i}"}, str(i).encode())
    answers = [raw.recv() for _ in range(20)]
    assert sorted(h["id"] for h, _ in answers) == list(range(20))
    assert all(h["status"] == 200 and h["h"]["x-beaver-vault-forwarded-to"] == leader.node_id for h, _ in answers)
    # A conditional write refused by the leader comes back as the leader answered it.
    h, body = raw.call({"id": 99, "op": "put", "key": "fwd/0", "h": {"if-none-match": "*"}}, b"1")
    assert h["status"] == 412 and body["outcome"] == "not_applied"
    raw.close()
    assert http(leader, "GET", "/kv/fwd/19").json() == 19
    # A frame that claims to be forwarded already is never forwarded again.
    raw = Raw(address(follower))
    h, body = raw.call({"id": 1, "op": "put", "key": "fwd/x", "fwd": "node9"}, b"1")
    assert h["status"] == 503 and body["outcome"] == "not_applied"
    raw.close()


async def test_many_tasks_share_one_async_client(cluster: Cluster) -> None:
    leader, follower = leader_and_follower(cluster)
    async with AsyncClient([follower.url], transport="pipelined") as client:

        async def worker(i: int) -> None:
            for j in range(10):
                await client.put(f"tasks/{i}/{j}", {"i": i, "j": j})
                assert await client.get(f"tasks/{i}/{j}") == {"i": i, "j": j}

        async with trio.open_nursery() as nursery:
            for i in range(32):
                nursery.start_soon(worker, i)
        page = await client.list("tasks/", limit=1000)
        assert page.count == 320
        with pytest.raises(PreconditionFailed):
            await client.put("tasks/0/0", 1, if_absent=True)
        pipes = client._pipes
        assert pipes is not None and len(pipes._endpoints) == 1
        pipe = pipes._endpoints[follower.url].pipe
        assert pipe is not None and pipe.broken is None  # one connection, never reopened


def test_sync_client_and_fallback_to_http(cluster: Cluster, tmp_path: Path) -> None:
    leader, follower = leader_and_follower(cluster)
    with Client([follower.url]) as client:  # auto: pipelined, since the node offers it
        assert client.put("sync/a", [1, 2]).revision > 0
        assert client.get("sync/a") == [1, 2]
        assert client._pipes is not None and client._pipes._endpoints[follower.url].pipe is not None
    with Client([follower.url], transport="http") as client:
        assert client.get("sync/a") == [1, 2]
        assert client._pipes is None
    # A node without a client port: auto uses HTTP, "pipelined" refuses.
    solo = Cluster(tmp_path / "solo")
    try:
        node = solo.add("solo1", extra_args=(*solo.extra_args, "--client-port", "-1"))
        solo.start("solo1")
        solo.wait_leader([node])
        assert node.status() is not None and node.status()["pipelined_address"] is None  # type: ignore[index]
        with Client([node.url]) as client:
            client.put("x", 1)
            assert client.get("x") == 1
        with Client([node.url], transport="pipelined") as client, pytest.raises(ClusterError):
            client.get("x")
    finally:
        solo.close()


async def test_limits_in_flight_and_connections(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "limits")
    try:
        args = (*c.extra_args, "--client-max-in-flight", "2", "--client-connections-per-client", "2")
        node = c.add("lim1", extra_args=args)
        c.start("lim1")
        c.wait_leader([node])
        addr = address(node)
        raw = Raw(addr)
        raw.send({"id": 1, "op": "watch"})
        raw.send({"id": 2, "op": "watch"})
        assert {raw.recv()[0]["id"], raw.recv()[0]["id"]} == {1, 2}
        h, body = raw.call({"id": 3, "op": "get", "key": "k"})
        assert h["status"] == 429 and body["outcome"] == "not_applied"
        second = Raw(addr)
        third = Raw(addr, hello=False)  # over the per-client limit: refused with an error frame
        h, body = third.recv()
        assert h["status"] == 429 and "too many connections" in json.loads(body or b"")["error"]
        for r in (raw, second, third):
            r.close()
        # Once the server has seen those connections close, a new one is accepted again.
        for _ in range(100):
            try:
                pipe = await AsyncPipe.connect(addr)
                break
            except PipeRefused:
                await trio.sleep(0.1)
        else:
            raise AssertionError("connections stayed refused after the others closed")
        header, _ = await pipe.request({"op": "put", "key": "k"}, b"1")
        assert header["status"] == 200
        await pipe.aclose()
    finally:
        c.close()


def test_a_forwarded_write_whose_leader_stops_answering_is_unknown(tmp_path: Path) -> None:
    import os
    import signal

    c = Cluster(tmp_path / "stall")
    try:
        leader = c.start_cluster(3)
        follower = next(n for n in c.live() if n.node_id != leader.node_id)
        raw = Raw(address(follower))
        h, _ = raw.call({"id": 1, "op": "put", "key": "stall/warm"}, b"1")  # opens the follower's link
        assert h["status"] == 200
        assert leader.proc is not None
        os.kill(leader.proc.pid, signal.SIGSTOP)
        try:
            # Sent long before the follower's election timeout: it goes to the stopped leader.
            h, body = raw.call({"id": 2, "op": "put", "key": "stall/k"}, b"2")
        finally:
            os.kill(leader.proc.pid, signal.SIGCONT)
        assert (h["status"], body["outcome"]) == (504, "unknown"), (h, body)  # never a plain failure
        raw.close()
    finally:
        c.close()


def test_async_client_under_asyncio_shares_its_connection(cluster: Cluster) -> None:
    import asyncio

    _, follower = leader_and_follower(cluster)

    async def main() -> list[Any]:
        async with AsyncClient([follower.url], transport="pipelined") as client:
            await asyncio.gather(*(client.put(f"asyncio/{i}", i) for i in range(40)))
            return list(await asyncio.gather(*(client.get(f"asyncio/{i}") for i in range(40))))

    assert asyncio.run(main()) == list(range(40))


def test_forwarding_survives_the_leader_restarting_on_a_new_port(tmp_path: Path) -> None:
    c = Cluster(tmp_path / "restart")
    try:
        leader = c.start_cluster(3)
        follower = next(n for n in c.live() if n.node_id != leader.node_id)
        with Client([follower.url], transport="pipelined") as client:
            client.put("restart/a", 1)  # the follower's link to the leader is open now
            leader.kill()
            leader.start()
            leader.wait_ready()
            # (client_port 0: the restarted node listens on a new port, found through /status)
            for i in range(10):  # forwarded to whichever node leads now, over a fresh link
                client.put(f"restart/{i}", i)
            assert client.get("restart/9") == 9
    finally:
        c.close()


def test_frame_reader_reports_what_the_frame_under_way_still_needs() -> None:
    reader = wire.FrameReader(100)
    frame = wire.encode({"id": 1}, b"x" * 50)
    assert reader.needed() == 0
    reader.feed(frame[:2])  # the length itself is not complete yet
    assert reader.frames() == [] and reader.needed() == 0
    reader.feed(frame[2:10])
    assert reader.frames() == [] and reader.needed() == len(frame) - 10
    reader.feed(frame[10:])
    assert [p for p, _ in reader.frames()] == [frame[4:]] and reader.needed() == 0
    reader.feed(struct.pack(">I", 500) + b"y" * 20)  # oversized: the rest is skipped
    assert reader.frames() == [(None, 500)] and reader.needed() == 480
    reader.feed(b"y" * 480 + frame)
    assert [p for p, _ in reader.frames()] == [frame[4:]] and reader.needed() == 0


def test_a_large_value_arriving_in_pieces_between_small_requests(cluster: Cluster) -> None:
    # The server sizes its receives by the frame under way: a large frame trickling in among
    # small ones is read whole and in step.
    leader, _ = leader_and_follower(cluster)
    raw = Raw(address(leader))
    value = "v" * (900 * 1024)
    frame = wire.encode({"id": 1, "op": "put", "key": "big/one"}, json.dumps(value).encode())
    raw.send({"id": 2, "op": "get", "key": "big/none"})
    for start in range(0, len(frame), 100_000):
        raw.send_raw(frame[start : start + 100_000])
    raw.send({"id": 3, "op": "put", "key": "big/small"}, b"3")
    answers = {h["id"]: h["status"] for h, _ in (raw.recv() for _ in range(3))}
    assert answers == {1: 200, 2: 404, 3: 200}
    h, body = raw.call({"id": 4, "op": "get", "key": "big/one"})
    assert (h["status"], body) == (200, value)
    raw.close()


def test_requests_without_a_task_time_out_cancel_and_end_with_their_connection(tmp_path: Path) -> None:
    """Puts, deletes and gets on the node that serves them run with no task of their own
    (``PipelinedServer._start``): answered from their waiter, abandoned by the connection's
    reaper after ``request_timeout_s`` (504, outcome unknown for a write; a read is
    not_applied), by a cancel (499) or when the connection closes; their ids count as in use
    and against the in-flight limit like any other. The leader can neither commit nor confirm
    a read here: both followers are stopped (and its election timeout is longer than the
    request timeout, so it does not step down first)."""
    import os
    import signal
    import time as _time

    from e2e_cluster import FAST_FLAGS

    flags = (*FAST_FLAGS, "--election-ticks", "200", "--request-timeout-s", "1.5", "--client-max-in-flight", "4")
    c = Cluster(tmp_path / "taskless", extra_args=flags)
    try:
        leader = c.start_cluster(3)
        followers = [n for n in c.live() if n.node_id != leader.node_id]
        raw = Raw(address(leader))
        assert raw.call({"id": 1, "op": "put", "key": "k"}, b'"before"')[0]["status"] == 200
        for f in followers:
            assert f.proc is not None
            os.kill(f.proc.pid, signal.SIGSTOP)
        try:
            started = _time.monotonic()
            raw.send({"id": 10, "op": "put", "key": "k"}, b'"lost?"')
            raw.send({"id": 11, "op": "get", "key": "k"})
            raw.send({"id": 12, "op": "delete", "key": "k"})
            raw.send({"id": 13, "op": "put", "key": "x"}, b"1")  # the fourth in flight: the limit
            raw.send({"id": 10, "op": "get", "key": "k"})  # id 10 is in use
            raw.send({"id": 14, "op": "get", "key": "x"})  # a fifth: refused
            raw.send({"id": 20, "op": "cancel", "target": 12})
            got: list[tuple[int, int, Any]] = []
            while len(got) < 7:
                h, data = raw.recv()
                got.append((h["id"], h["status"], json.loads(data) if data else None))
            waited = _time.monotonic() - started
            by = {(i, status): body for i, status, body in got}
            assert "already in flight" in by[(10, 400)]["error"], got
            assert by[(14, 429)]["outcome"] == "not_applied", got
            assert by[(20, 200)] == {"cancelled": True}, got
            assert by[(12, 499)]["outcome"] == "unknown", got
            assert by[(10, 504)]["outcome"] == "unknown" and by[(13, 504)]["outcome"] == "unknown", got
            read = [body for i, status, body in got if i == 11]
            assert len(read) == 1 and read[0]["outcome"] == "not_applied", got
            assert waited >= 1.4, waited  # the timeout, not an early refusal
            # A connection that closes with requests in flight: they are abandoned, the node goes on.
            gone = Raw(address(leader))
            gone.send({"id": 1, "op": "put", "key": "gone"}, b"1")
            gone.send({"id": 2, "op": "get", "key": "gone"})
            gone.close()
        finally:
            for f in followers:
                assert f.proc is not None
                os.kill(f.proc.pid, signal.SIGCONT)
        h, body = raw.call({"id": 30, "op": "put", "key": "after"}, b'"ok"')
        assert h["status"] == 200, (h, body)
        h, body = raw.call({"id": 31, "op": "get", "key": "k"})
        # 10's put and 12's delete were unknown: each may have taken effect once the followers
        # came back (they were in the leader's log); nothing else may have.
        assert (h["status"], body) in ((200, "before"), (200, "lost?"), (404, body)), (h, body)
        raw.close()
    except BaseException:
        c.dump_logs()
        raise
    finally:
        c.close()


def test_the_deadline_queue_of_requests_without_a_task_stays_bounded_and_in_order() -> None:
    """Answered requests behind a pending one are dropped once the queue passes its bound (twice
    the in-flight limit; here 4 in flight at most, so 8)."""
    from collections import deque

    from beaver_vault.api.pipelined import _queue_deadline, _Started
    from beaver_vault.api.pipelined_ops import Started

    pending = Started(None, "write", lambda _: (200, {}, b""))
    queue: deque[_Started] = deque()
    head = _Started(0, "put", pending, 1.0)
    _queue_deadline(queue, head, 8)
    for rid in range(1, 100):
        st = _Started(rid, "put", pending, 1.0 + rid)
        _queue_deadline(queue, st, 8)
        if rid % 30:
            st.started = None  # answered at once, the usual case
        assert len(queue) <= 8
    assert queue[0] is head  # the oldest pending one stays first
    kept = [st.rid for st in queue if st.started is not None]
    assert kept == [0, 30, 60, 90]
    assert [st.rid for st in queue] == sorted(st.rid for st in queue)
