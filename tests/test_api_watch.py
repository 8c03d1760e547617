"""Watches over Server-Sent Events and WebSocket, on a real single-node ``NodeRuntime``.

SSE streams are read through Quart's in-process test connection (``client.request``), under
the autojump clock; one WebSocket test runs against a real Hypercorn server and a
trio-websocket client (real sockets, so real time: a fast-ticking node) because only a real
close frame carries the close reason.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import hypercorn
import hypercorn.trio
import pytest
import trio
import trio.testing
from quart.testing.connections import WebsocketDisconnectError
from quart.typing import TestClientProtocol as Client
from quart.typing import TestHTTPConnectionProtocol as Connection
from trio_websocket import ConnectionClosed, open_websocket_url

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.kv import commands
from beaver_vault.node.runtime import NodeRuntime, RuntimeOptions
from beaver_vault.storage.memory import MemoryStorage

KV = "/api/v1/kv"


def make_runtime(tick_ms: int = 50) -> NodeRuntime:
    return NodeRuntime(
        node_id="node1",
        storage=MemoryStorage(),
        options=RuntimeOptions(
            raft_address="127.0.0.1:7000", http_address="http://127.0.0.1:8000", seed=1, tick_ms=tick_ms
        ),
    )


async def until_leader(rt: NodeRuntime) -> None:
    with trio.fail_after(30):
        while rt.status().role != "leader":
            await trio.sleep(0.01)


@pytest.fixture
async def runtime(node_runtime: NodeRuntime) -> NodeRuntime:
    return node_runtime  # the real single-node runtime (conftest.py), not the FakeRuntime default


async def body_json(response: Any) -> Any:
    return json.loads(await response.get_data(as_text=True))


async def put(client: Client, key: str, value: Any) -> int:
    r = await client.put(f"{KV}/{key}", data=json.dumps(value))
    assert r.status_code == 200
    revision: int = (await body_json(r))["revision"]
    return revision


# --------------------------------------------------------------------------- an SSE reader


@dataclass
class SseMessage:
    event: str = "message"
    id: str | None = None
    data: str = ""

    def json(self) -> Any:
        return json.loads(self.data)


@dataclass
class SseStream:
    conn: Connection
    buffer: str = ""
    messages: list[SseMessage] = field(default_factory=list)
    comments: list[str] = field(default_factory=list)
    ended: bool = False

    async def _read(self) -> None:
        """Read one chunk and parse every complete block in the buffer."""
        try:
            self.buffer += (await self.conn.receive()).decode("utf-8")
        except (trio.EndOfChannel, trio.ClosedResourceError):
            self.ended = True
        while "\n\n" in self.buffer:
            block, self.buffer = self.buffer.split("\n\n", 1)
            msg = SseMessage()
            has_fields = False
            for line in block.split("\n"):
                name, _, value = line.partition(":")
                value = value.removeprefix(" ")
                if name == "":
                    self.comments.append(value)
                elif name == "id":
                    msg.id, has_fields = value, True
                elif name == "event":
                    msg.event, has_fields = value, True
                elif name == "data":
                    msg.data, has_fields = msg.data + value, True
            if has_fields:
                self.messages.append(msg)

    async def until_comment(self, text: str) -> None:
        with trio.fail_after(60):
            while text not in self.comments:
                assert not self.ended
                await self._read()

    async def next(self) -> SseMessage | None:
        """The next event (comments are collected aside); None once the stream has ended."""
        while not self.messages:
            if self.ended:
                return None
            await self._read()
        return self.messages.pop(0)

    async def events(self, n: int) -> list[SseMessage]:
        out = []
        with trio.fail_after(30):
            for _ in range(n):
                msg = await self.next()
                assert msg is not None, f"stream ended after {out}"
                out.append(msg)
        return out


@asynccontextmanager
async def sse(client: Client, query: str = "", headers: dict[str, str] | None = None) -> AsyncIterator[SseStream]:
    async with client.request(f"/api/v1/watch{query}", method="GET", headers=headers or {}) as conn:
        await conn.send_complete()
        stream = SseStream(conn)
        await stream.until_comment("watching")  # the opening comment: the watcher is subscribed
        assert conn.status_code == 200  # type: ignore[attr-defined]
        assert conn.headers is not None and conn.headers["Content-Type"].startswith("text/event-stream")  # type: ignore[attr-defined]
        try:
            yield stream
        finally:
            if not stream.ended:
                await hang_up(conn, runtime_of(client))


def runtime_of(client: Client) -> NodeRuntime:
    rt: NodeRuntime = client.app.extensions["beaver_vault.runtime"]
    return rt


async def hang_up(conn: Connection, runtime: NodeRuntime) -> None:
    """Disconnect mid-stream. Quart-Trio's test connection then waits forever for the end of a
    body that never comes (the app was cancelled), so once the app has let go of its watcher,
    close the connection's receiving end: its exit treats that as the end of the response."""
    await conn.disconnect()
    with trio.fail_after(10):
        while runtime.watch_hub.watchers:
            await trio.sleep(0.001)
    await trio.sleep(0.01)
    conn._client_receive.close()  # type: ignore[attr-defined]


def data(messages: list[SseMessage]) -> list[dict[str, Any]]:
    return [m.json() for m in messages]


# --------------------------------------------------------------------------- SSE


async def test_sse_streams_every_change_in_order(client: Client) -> None:
    async with sse(client, "?prefix=app/") as stream:
        r1 = await put(client, "app/a", {"x": 1})
        await put(client, "elsewhere", 0)
        r2 = await put(client, "app/b", [1])
        r3 = (await body_json(await client.delete(f"{KV}/app/a")))["revision"]
        got = await stream.events(3)
    assert data(got) == [
        {"type": "put", "key": "app/a", "value": {"x": 1}, "revision": r1},
        {"type": "put", "key": "app/b", "value": [1], "revision": r2},
        {"type": "delete", "key": "app/a", "value": None, "revision": r3},
    ]
    assert [m.id for m in got] == [str(r1), str(r2), str(r3)]
    assert all(m.event == "message" for m in got)


async def test_sse_from_revision_replays_then_follows(client: Client) -> None:
    revs = [await put(client, f"k{i}", i) for i in range(3)]
    async with sse(client, f"?from_revision={revs[1]}") as stream:
        first = await stream.events(2)
        r4 = await put(client, "k9", 9)
        more = await stream.events(1)
    assert [m["revision"] for m in data(first + more)] == [revs[1], revs[2], r4]


async def test_sse_resume_with_last_event_id_has_no_gap_and_no_duplicate(client: Client) -> None:
    revs = [await put(client, f"k{i}", i) for i in range(5)]
    async with sse(client, f"?from_revision={revs[0]}") as stream:
        seen = await stream.events(3)
    # Writes while disconnected, then EventSource-style reconnect: same URL + Last-Event-ID.
    revs += [await put(client, "k5", 5)]
    async with sse(client, f"?from_revision={revs[0]}", headers={"Last-Event-ID": seen[-1].id or ""}) as stream:
        seen += await stream.events(3)
    assert [m["revision"] for m in data(seen)] == revs


async def test_sse_resume_inside_a_multi_event_revision(client: Client) -> None:
    for key in ("p/a", "p/b", "p/c"):
        await put(client, key, 1)
    async with sse(client, "?prefix=p/") as stream:
        r = await client.delete(f"{KV}?prefix=p/&confirm=true")
        rev = (await body_json(r))["revision"]
        got = await stream.events(3)
    assert [m.id for m in got] == [f"{rev}:1", f"{rev}:2", str(rev)]
    assert [m["key"] for m in data(got)] == ["p/a", "p/b", "p/c"]
    # Dropped after the first event of the revision: the resume delivers exactly the rest.
    async with sse(client, "?prefix=p/", headers={"Last-Event-ID": f"{rev}:1"}) as stream:
        rest = await stream.events(2)
        after = await put(client, "p/z", 2)
        rest += await stream.events(1)
    assert [(m.id, m.json()["key"]) for m in rest] == [(f"{rev}:2", "p/b"), (str(rev), "p/c"), (str(after), "p/z")]


async def test_sse_last_event_id_query_parameter(client: Client) -> None:
    revs = [await put(client, f"k{i}", i) for i in range(3)]
    async with sse(client, f"?last_event_id={revs[0]}") as stream:
        got = await stream.events(2)
    assert [m["revision"] for m in data(got)] == revs[1:]


@pytest.mark.parametrize("options", [ApiOptions(watch_keepalive_s=0.05)])
async def test_sse_sends_keepalive_comments(client: Client) -> None:
    async with sse(client) as stream:
        await stream.until_comment("keep-alive")


async def test_sse_compacted_start_is_410(client: Client, runtime: NodeRuntime) -> None:
    runtime.watch_hub.history_max = 2  # keep only the last two events
    first = await put(client, "k", 1)
    for i in range(3):
        await put(client, "k", i)
    r = await client.get(f"/api/v1/watch?from_revision={first}")
    assert r.status_code == 410
    body = await body_json(r)
    assert "re-list" in body["error"] and body["outcome"] == "not_applied"


@pytest.mark.parametrize(
    ("query", "headers"),
    [
        ("?from_revision=x", {}),
        ("?from_revision=0", {}),
        ("?from_revision=-3", {}),
        ("?prefix=" + "p" * 1025, {}),
        ("", {"Last-Event-ID": "abc"}),
        ("", {"Last-Event-ID": "5:0"}),
        ("", {"Last-Event-ID": "5:x"}),
    ],
)
async def test_sse_bad_parameters_are_400(client: Client, query: str, headers: dict[str, str]) -> None:
    r = await client.get(f"/api/v1/watch{query}", headers=headers)
    assert r.status_code == 400
    assert (await body_json(r))["error"]


@pytest.mark.parametrize("options", [ApiOptions(watch_buffer_max=2)])
async def test_sse_slow_watcher_is_disconnected_with_a_reason(client: Client, runtime: NodeRuntime) -> None:
    async with sse(client) as stream:
        # Nobody reads: the test connection's small channel fills, then the watcher's buffer.
        for i in range(40):
            await put(client, f"k{i}", i)
        messages: list[SseMessage] = []
        with trio.fail_after(30):
            while (msg := await stream.next()) is not None:
                messages.append(msg)
    assert messages[-1].event == "error"
    assert "fell behind" in messages[-1].json()["error"]
    revisions = [m.json()["revision"] for m in messages[:-1]]
    assert revisions == sorted(revisions) and len(revisions) < 40
    assert not runtime.watch_hub.watchers  # nothing left subscribed


async def test_sse_disconnect_unsubscribes(client: Client, runtime: NodeRuntime) -> None:
    async with sse(client):
        assert len(runtime.watch_hub.watchers) == 1
    with trio.fail_after(5):
        while runtime.watch_hub.watchers:
            await trio.sleep(0.01)


async def test_metrics_count_open_watches(client: Client) -> None:
    async with sse(client):
        text = await (await client.get("/metrics")).get_data(as_text=True)
        assert 'beaver_vault_watchers{transport="sse"} 1.0' in text


# --------------------------------------------------------------------------- WebSocket (test client)


async def test_websocket_streams_events_and_resumes(client: Client) -> None:
    r0 = await put(client, "w/0", 0)
    async with client.websocket("/api/v1/watch/ws", query_string={"prefix": "w/", "from_revision": str(r0)}) as ws:
        first = json.loads(await ws.receive())
        r1 = await put(client, "w/1", {"a": 1})
        await put(client, "other", 1)
        second = json.loads(await ws.receive())
        await ws.send("ignored")  # client messages are read and ignored
    assert first == {"type": "put", "key": "w/0", "value": 0, "revision": r0}
    assert second == {"type": "put", "key": "w/1", "value": {"a": 1}, "revision": r1}
    r2 = await put(client, "w/2", 2)
    async with client.websocket("/api/v1/watch/ws", query_string={"prefix": "w/", "from_revision": str(r1 + 1)}) as ws:
        assert json.loads(await ws.receive())["revision"] == r2


async def test_websocket_compacted_start_reports_410_then_closes(client: Client, runtime: NodeRuntime) -> None:
    runtime.watch_hub.history_max = 2
    first = await put(client, "k", 1)
    for i in range(3):
        await put(client, "k", i)
    async with client.websocket("/api/v1/watch/ws", query_string={"from_revision": str(first)}) as ws:
        body = json.loads(await ws.receive())
        assert body["status"] == 410 and "re-list" in body["error"]
        with pytest.raises(WebsocketDisconnectError) as closed:
            await ws.receive()
    assert closed.value.args[0] == 4410


async def test_websocket_bad_parameters_report_400(client: Client) -> None:
    async with client.websocket("/api/v1/watch/ws", query_string={"from_revision": "nope"}) as ws:
        assert json.loads(await ws.receive())["status"] == 400
        with pytest.raises(WebsocketDisconnectError) as closed:
            await ws.receive()
    assert closed.value.args[0] == 4400


# --------------------------------------------------------------------------- WebSocket over a real server


@asynccontextmanager
async def served(app: Any) -> AsyncIterator[str]:
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


async def test_websocket_slow_watcher_is_closed_with_a_reason_over_real_sockets(nursery: trio.Nursery) -> None:
    rt = make_runtime(tick_ms=5)
    await nursery.start(rt.run)
    await until_leader(rt)
    for i in range(4):
        await rt.write(commands.put(f"s/{i}", i), timeout_s=5)
    app = create_app(rt, ApiOptions(watch_buffer_max=3))
    async with served(app) as base:
        ws_url = base.replace("http://", "ws://") + "/api/v1/watch/ws?prefix=s/"
        async with open_websocket_url(ws_url) as ws:
            with trio.fail_after(10):
                while not rt.watch_hub.watchers:
                    await trio.sleep(0.01)
            # One revision with 4 events (a prefix delete), more than the 3 the watcher may hold:
            # they arrive in one applied batch, before the sender task can take any.
            result = await rt.write(commands.delete_prefix("s/"), timeout_s=5)
            messages = []
            with trio.fail_after(10), pytest.raises(ConnectionClosed) as closed:
                while True:
                    messages.append(json.loads(await ws.get_message()))
            # trio-websocket 0.12's client leaves its socket open when the server closes the TCP
            # connection after a server-initiated close (ResourceWarning); close it here.
            await ws._stream.aclose()
        rev = result["revision"]
        # What was buffered is delivered, then the reason and the exact resume point.
        assert [m["key"] for m in messages[:-1]] == ["s/0", "s/1", "s/2"]
        assert "fell behind" in messages[-1]["error"] and messages[-1]["last_event_id"] == f"{rev}:3"
        assert closed.value.reason.code == 1013
        assert closed.value.reason.reason is not None and "fell behind" in closed.value.reason.reason
        # Resuming there delivers the one event that was missing (through an app whose watchers
        # may hold the replayed revision: replayed history counts against the buffer too).
        async with create_app(rt).test_app() as test_app:
            query = {"prefix": "s/", "last_event_id": f"{rev}:3"}
            async with test_app.test_client().websocket("/api/v1/watch/ws", query_string=query) as resumed:
                with trio.fail_after(10):
                    assert json.loads(await resumed.receive())["key"] == "s/3"
        assert not rt.watch_hub.watchers
