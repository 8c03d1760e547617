"""Forwarded writes carry a deadline; a leader does not start one past it (issue 13, item 1).

In-process leader app (Quart's test client, FakeRuntime) for the leader's side; a raw
listener records what a follower's forwarder sends. The real-process case (a stopped leader
resuming with the request in its buffer) is in ``test_late_unknown.py``.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial

import trio
from fake_runtime import FakeRuntime

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.api.deadline import BUDGET_HEADER, SENT_AT_HEADER, budget_ms

FORWARDED_BY = "X-Beaver-Vault-Forwarded-By"


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def test_the_leader_refuses_a_forwarded_write_whose_deadline_passed() -> None:
    runtime = FakeRuntime("node1")
    app = create_app(runtime, ApiOptions())
    async with app.test_app() as test_app:
        client = test_app.test_client()
        # On time: applied.
        fresh = {FORWARDED_BY: "node2", SENT_AT_HEADER: str(now_ms()), BUDGET_HEADER: "2000"}
        r = await client.put("/api/v1/kv/k", data='"on-time"', headers=fresh)
        assert r.status_code == 200
        # Sent 5 s ago with a 2 s budget (the same sender, so the offset estimate is known):
        # the follower has answered "unknown" long ago; not applied, and said so.
        late = {FORWARDED_BY: "node2", SENT_AT_HEADER: str(now_ms() - 5000), BUDGET_HEADER: "2000"}
        for method, path, body in (
            ("PUT", "/api/v1/kv/k", '"late"'),
            ("DELETE", "/api/v1/kv/k", None),
            ("POST", "/api/v1/txn", json.dumps({"compare": [], "success": [{"op": "put", "key": "k", "value": 1}]})),
        ):
            r = await client.open(path, method=method, data=body, headers=late)
            assert r.status_code == 503, await r.get_data(as_text=True)
            assert json.loads(await r.get_data(as_text=True))["outcome"] == "not_applied"
        assert len(runtime.log) == 1  # only the on-time write reached the log
        # A request that is not forwarded (no header) has no deadline at all.
        r = await client.put("/api/v1/kv/k2", data='"direct"')
        assert r.status_code == 200 and len(runtime.log) == 2


@asynccontextmanager
async def recording_listener(seen: list[bytes]) -> AsyncIterator[str]:
    async def handler(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            data += chunk
        seen.append(data)
        await stream.send_all(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, handler, 0, host="127.0.0.1"))
        try:
            yield f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        finally:
            nursery.cancel_scope.cancel()


async def test_the_follower_stamps_its_clock_and_a_budget_shorter_than_its_own_wait() -> None:
    seen: list[bytes] = []
    async with recording_listener(seen) as url:
        runtime = FakeRuntime("node2", http_address="http://127.0.0.1:8001")
        runtime.follow("node1", url)
        app = create_app(runtime, ApiOptions(forward_timeout_s=3.0))
        async with app.test_app() as test_app:
            before = now_ms()
            r = await test_app.test_client().put("/api/v1/kv/k", data='"v"')
            after = now_ms()
            assert r.status_code == 200
    head = seen[0].decode("latin-1").lower()
    headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
    assert before <= int(headers[SENT_AT_HEADER.lower()]) <= after
    assert int(headers[BUDGET_HEADER.lower()]) == budget_ms(3.0) < 3000


async def test_a_follower_that_gives_up_resets_the_connection() -> None:
    # The follower closes abortively (SO_LINGER 0): the leader's side sees a reset, not an
    # orderly EOF, and the kernel threw away whatever was still unsent or unacknowledged, so a
    # request the follower gave up on is never delivered later by TCP retransmission.
    ends: list[str] = []

    async def never_answer(stream: trio.SocketStream) -> None:
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(65536)
        try:
            rest = await stream.receive_some(65536)
            while rest:  # the body, if any
                rest = await stream.receive_some(65536)
            ends.append("eof")
        except trio.BrokenResourceError:
            ends.append("reset")

    async with trio.open_nursery() as nursery:
        listeners = await nursery.start(partial(trio.serve_tcp, never_answer, 0, host="127.0.0.1"))
        url = f"http://127.0.0.1:{listeners[0].socket.getsockname()[1]}"
        runtime = FakeRuntime("node2", http_address="http://127.0.0.1:8001")
        runtime.follow("node1", url)
        app = create_app(runtime, ApiOptions(forward_timeout_s=0.3))
        async with app.test_app() as test_app:
            r = await test_app.test_client().put("/api/v1/kv/k", data='"v"')
            assert r.status_code == 504
            assert json.loads(await r.get_data(as_text=True))["outcome"] == "unknown"
            with trio.fail_after(10):
                while not ends:
                    await trio.sleep(0.01)
        nursery.cancel_scope.cancel()
    assert ends == ["reset"]
