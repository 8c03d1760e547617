"""Forwarding from a follower to the leader, over real sockets.

The leader is a real app served by ``hypercorn.trio.serve`` on 127.0.0.1, port 0; the
follower is an app in Quart's test client whose runtime raises ``NotLeader(leader_http=...)``.
Misbehaving "leaders" are raw Trio listeners: one that drops the connection after reading
the request (outcome unknown for writes), one that never answers (timeout), and a closed
port (never sent: not applied).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import hypercorn
import hypercorn.trio
import pytest
import trio
from fake_runtime import FakeRuntime
from quart.typing import TestClientProtocol as Client
from quart_trio import QuartTrio

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.errors import NoLeader, Overloaded

FORWARDED_BY = "X-Beaver-Vault-Forwarded-By"
FORWARDED_TO = "X-Beaver-Vault-Forwarded-To"


@asynccontextmanager
async def serve(app: QuartTrio) -> AsyncIterator[str]:
    """Serve ``app`` on an ephemeral loopback port; yield its base URL; shut down cleanly."""
    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 1.0
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        urls: list[str] = await nursery.start(
            partial(hypercorn.trio.serve, app, config, shutdown_trigger=shutdown.wait)
        )
        try:
            yield urls[0]
        finally:
            shutdown.set()


@asynccontextmanager
async def raw_listener(handler: Callable[[trio.SocketStream], Awaitable[None]]) -> AsyncIterator[str]:
    """A bare TCP 'leader' on loopback running ``handler`` per connection."""
    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        port = listeners[0].socket.getsockname()[1]
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            nursery.cancel_scope.cancel()


async def read_request_head(stream: trio.SocketStream) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        if not chunk:
            break
        data += chunk
    return data


async def drop_after_request(stream: trio.SocketStream) -> None:
    """Read the request, then close without a word: it may or may not have been processed."""
    await read_request_head(stream)
    await stream.aclose()


async def never_answer(stream: trio.SocketStream) -> None:
    await read_request_head(stream)
    await trio.sleep_forever()


async def body_json(response: Any) -> Any:
    return json.loads(await response.get_data(as_text=True))


@asynccontextmanager
async def follower_client(
    leader_id: str | None, leader_http: str, options: ApiOptions | None = None
) -> AsyncIterator[tuple[Client, FakeRuntime]]:
    runtime = FakeRuntime("node2", http_address="http://127.0.0.1:8001")
    runtime.follow(leader_id, leader_http)
    app = create_app(runtime, options or ApiOptions())
    async with app.test_app() as test_app:
        yield test_app.test_client(), runtime


# --------------------------------------------------------------------------- a healthy leader


@pytest.fixture
async def leader() -> AsyncIterator[tuple[FakeRuntime, str]]:
    runtime = FakeRuntime("node1", http_address="http://127.0.0.1:8000")
    async with serve(create_app(runtime, ApiOptions())) as url:
        yield runtime, url


@pytest.fixture
async def follower(leader: tuple[FakeRuntime, str]) -> AsyncIterator[tuple[Client, FakeRuntime]]:
    async with follower_client("node1", leader[1]) as pair:
        yield pair


async def test_write_on_a_follower_is_applied_by_the_leader(
    leader: tuple[FakeRuntime, str], follower: tuple[Client, FakeRuntime]
) -> None:
    leader_rt, _ = leader
    client, follower_rt = follower
    r = await client.put(
        "/api/v1/kv/mykey", data='"myvalue"', headers={"Content-Type": "application/x-www-form-urlencoded"}
    )
    assert r.status_code == 200
    body = await body_json(r)
    assert body["key"] == "mykey" and body["created"] is True
    assert r.headers[FORWARDED_TO] == "node1"
    assert leader_rt.get_local("mykey") is not None and follower_rt.log == []

    r = await client.get("/api/v1/kv/mykey")
    assert r.status_code == 200
    assert await r.get_data(as_text=True) == '"myvalue"'
    assert r.headers["Content-Type"] == "application/json"
    assert r.headers["ETag"] == f'"{body["revision"]}"'
    assert r.headers["X-Beaver-Vault-Consistency"] == "linearizable"
    assert leader_rt.barriers == 1

    r = await client.delete("/api/v1/kv/mykey")
    assert r.status_code == 200 and (await body_json(r))["deleted"] is True
    r = await client.get("/api/v1/kv/mykey")
    assert r.status_code == 404
    assert (await body_json(r))["key"] == "mykey"


async def test_paths_with_slashes_spaces_and_unicode_arrive_intact(
    leader: tuple[FakeRuntime, str], follower: tuple[Client, FakeRuntime]
) -> None:
    leader_rt, _ = leader
    client, _ = follower
    key = "dir//sub dir/ключ/"
    assert (await client.put(f"/api/v1/kv/{key}", data="[1]")).status_code == 200
    record = leader_rt.get_local(key)
    assert record is not None and record.value == "[1]"


async def test_join_and_remove_are_forwarded(
    leader: tuple[FakeRuntime, str], follower: tuple[Client, FakeRuntime]
) -> None:
    leader_rt, _ = leader
    client, follower_rt = follower
    r = await client.post("/api/v1/raft/join", data='{"NodeID": "node3", "RaftAddress": "localhost:7002"}')
    assert r.status_code == 200
    assert [m["id"] for m in (await body_json(r))["members"]] == ["node1", "node3"]
    assert leader_rt.membership.get("node3") is not None and follower_rt.membership.get("node3") is None
    r = await client.post("/api/v1/raft/remove", data='{"NodeID": "node3"}')
    assert r.status_code == 200 and leader_rt.membership.get("node3") is None


async def test_status_and_stale_reads_are_never_forwarded(
    leader: tuple[FakeRuntime, str], follower: tuple[Client, FakeRuntime]
) -> None:
    client, _ = follower
    assert (await client.put("/api/v1/kv/k", data='"v"')).status_code == 200
    r = await client.get("/api/v1/status")
    assert (await body_json(r))["node_id"] == "node2"
    r = await client.get("/api/v1/kv/k?consistency=stale")
    assert r.status_code == 404  # the follower's own (fake, unreplicated) copy
    assert r.headers["X-Beaver-Vault-Consistency"] == "stale"


async def test_bad_input_is_refused_by_the_follower_itself(
    leader: tuple[FakeRuntime, str], follower: tuple[Client, FakeRuntime]
) -> None:
    leader_rt, _ = leader
    client, _ = follower
    for r in (
        await client.put("/api/v1/kv/k", data="NaN"),
        await client.put("/api/v1/kv/" + "x" * 1025, data="1"),
        await client.get("/api/v1/kv/k?consistency=weird"),
        await client.post("/api/v1/raft/join", data='{"NodeID": "node3"}'),
    ):
        assert r.status_code == 400
        assert FORWARDED_TO not in r.headers
    assert leader_rt.log == [] and leader_rt.barriers == 0


async def test_the_leaders_errors_come_back_unchanged(
    leader: tuple[FakeRuntime, str], follower: tuple[Client, FakeRuntime]
) -> None:
    leader_rt, _ = leader
    client, _ = follower
    leader_rt.fail_next(Overloaded(), "write")
    r = await client.put("/api/v1/kv/k", data='"v"')
    assert r.status_code == 503 and r.headers["Retry-After"] == "1"
    assert (await body_json(r))["outcome"] == "not_applied"
    leader_rt.fail_next(NoLeader(), "read_barrier")
    r = await client.get("/api/v1/kv/k")
    assert r.status_code == 503 and (await body_json(r))["outcome"] == "not_applied"


async def test_a_forwarded_request_is_never_forwarded_twice(
    leader: tuple[FakeRuntime, str], follower: tuple[Client, FakeRuntime]
) -> None:
    # The node we forward to has itself lost leadership and knows a third node: it must not
    # forward again (the header says the request was forwarded already), only ask to retry.
    leader_rt, url = leader
    client, _ = follower
    leader_rt.follow("node3", url)  # pointing back at itself: a loop, if the header were ignored
    r = await client.put("/api/v1/kv/k", data='"v"')
    assert r.status_code == 503
    body = await body_json(r)
    assert body == {"error": "leader changed, retry", "outcome": "not_applied", "leader_id": "node3"}
    assert leader_rt.log == []


async def test_the_forwarded_by_header_names_this_node() -> None:
    seen: list[bytes] = []

    async def record(stream: trio.SocketStream) -> None:
        seen.append(await read_request_head(stream))
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")
        await stream.aclose()

    async with raw_listener(record) as url, follower_client("node1", url) as (client, _):
        r = await client.get("/api/v1/kv/a%20b?consistency=linearizable")
        assert r.status_code == 200
    head = seen[0].decode("latin-1").lower()
    assert head.startswith("get /api/v1/kv/a%20b?consistency=linearizable http/1.1\r\n")
    assert f"{FORWARDED_BY.lower()}: node2\r\n" in head


# --------------------------------------------------------------------------- leaders that fail


async def test_unreachable_leader_means_not_applied() -> None:
    sock = trio.socket.socket()
    await sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused, the request was never sent
    async with follower_client("node1", f"http://127.0.0.1:{port}") as (client, _):
        for r in (
            await client.put("/api/v1/kv/k", data='"v"'),
            await client.get("/api/v1/kv/k"),
            await client.delete("/api/v1/kv/k"),
        ):
            assert r.status_code == 503
            body = await body_json(r)
            assert body["outcome"] == "not_applied" and body["leader_id"] == "node1"


async def test_dropped_connection_means_unknown_for_writes() -> None:
    async with raw_listener(drop_after_request) as url, follower_client("node1", url) as (client, _):
        for r in (
            await client.put("/api/v1/kv/k", data='"v"'),
            await client.delete("/api/v1/kv/k"),
            await client.post("/api/v1/raft/join", data='{"NodeID": "node3", "RaftAddress": "h:1"}'),
        ):
            assert r.status_code in (503, 504)
            body = await body_json(r)
            assert body["outcome"] == "unknown", body
            assert body["leader_id"] == "node1"
        r = await client.get("/api/v1/kv/k")
        assert r.status_code == 503
        assert (await body_json(r))["outcome"] == "not_applied"


async def test_leader_that_never_answers_means_504_unknown_for_writes() -> None:
    options = ApiOptions(forward_timeout_s=0.3)
    async with raw_listener(never_answer) as url, follower_client("node1", url, options) as (client, _):
        r = await client.put("/api/v1/kv/k", data='"v"')
        assert r.status_code == 504
        assert (await body_json(r))["outcome"] == "unknown"
        r = await client.get("/api/v1/kv/k")
        assert r.status_code == 503


async def test_leader_without_http_address_is_503_not_applied() -> None:
    async with follower_client("node1", "") as (client, _):
        r = await client.put("/api/v1/kv/k", data='"v"')
        assert r.status_code == 503
        assert await body_json(r) == {
            "error": "not the leader (leader: node1)",
            "outcome": "not_applied",
            "leader_id": "node1",
        }


# --------------------------------------------------------------------------- over a real server


async def test_limits_over_a_real_server() -> None:
    runtime = FakeRuntime("node1")
    async with (
        serve(create_app(runtime, ApiOptions(max_body_bytes=1000))) as url,
        httpx.AsyncClient(base_url=url, trust_env=False) as http,
    ):
        r = await http.put(
            "/api/v1/kv/mykey", content=b'"myvalue"', headers={"Content-Type": "application/x-www-form-urlencoded"}
        )
        assert r.status_code == 200
        r = await http.get("/api/v1/kv/mykey")
        assert r.text == '"myvalue"' and r.headers["content-type"] == "application/json"

        # Declared too large: refused from Content-Length.
        r = await http.put("/api/v1/kv/mykey", content=b'"' + b"x" * 1000 + b'"')
        assert r.status_code == 413 and r.json()["outcome"] == "not_applied"

        # Chunked (no Content-Length): bounded while reading.
        async def chunks() -> AsyncIterator[bytes]:
            yield b'"'
            for _ in range(3):
                yield b"x" * 400
            yield b'"'

        r = await http.put("/api/v1/kv/mykey", content=chunks())
        assert r.status_code == 413 and r.json()["outcome"] == "not_applied"

        # Percent-encoded invalid UTF-8 in the path (here an encoded lone surrogate) is refused,
        # never stored with replacement characters (which would alias %FE and %FF).
        r = await http.put("/api/v1/kv/a%ED%A0%80b", content=b"1")
        assert r.status_code == 400 and "not valid UTF-8" in r.json()["error"]

        r = await http.get("/api/v1/kv/mykey")
        assert r.text == '"myvalue"'
        assert len(runtime.log) == 1  # the refused key appended nothing
