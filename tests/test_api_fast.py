"""The fast path (``api/fast.py``) answers exactly as the Quart routes do.

Two identical in-memory runtimes, two apps: requests go through the whole app (fast path in
front) on one and straight into Quart (``app.asgi_app``, the fast path bypassed) on the other,
in the same order, so both runtimes hold the same state throughout. Every answer is compared
whole over ASGI: status, the full header list (order included) and the body. Each test also
checks whether the fast path served the request itself or handed it to Quart, so a case that
silently fell back does not pass for a fast-path test.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import hypercorn.trio
import pytest
import trio
import trio.testing
from fake_runtime import FakeRuntime
from hypercorn.config import Config as HyperConfig
from hypercorn.typing import ASGIReceiveEvent, ASGISendEvent, ConnectionState, HTTPScope

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.api.app import BeaverVaultApp
from beaver_vault.errors import InvariantViolation, NoLeader, Overloaded, Rejected, Unknown

KV = "/api/v1/kv/"
OPTS = ApiOptions(max_key_bytes=64, max_body_bytes=2048, max_json_depth=8, request_timeout_s=2.0)

Receive = Callable[[], Awaitable[ASGIReceiveEvent]]


@dataclass
class Answer:
    status: int | None
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Side:
    runtime: FakeRuntime
    app: BeaverVaultApp
    handed_to_quart: int = 0


async def _side() -> Side:
    runtime = FakeRuntime()
    app = create_app(runtime, OPTS)
    assert isinstance(app, BeaverVaultApp) and app.fast_kv is not None
    side = Side(runtime, app)
    fast = app.fast_kv
    quart = fast.app

    async def counting(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            side.handed_to_quart += 1
        await quart(scope, receive, send)

    fast.app = counting
    return side


@pytest.fixture
async def sides(autojump_clock: trio.testing.MockClock) -> AsyncIterator[tuple[Side, Side]]:
    fast, quart = await _side(), await _side()
    async with fast.app.test_app(), quart.app.test_app():  # lifespan: the forwarders start
        yield fast, quart


def scope_of(method: str, path: str, query: bytes, headers: list[tuple[bytes, bytes]]) -> HTTPScope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.1"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        # As a real client sends it (percent-encoded); the server decoded ``path`` from it.
        "raw_path": quote(path.encode("utf-8", "surrogatepass"), safe="/").encode("ascii"),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"testserver"), *headers],
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
        "extensions": {},
        "state": ConnectionState({}),
    }


async def call_asgi(
    asgi: Callable[..., Awaitable[None]],
    method: str,
    path: str,
    *,
    body: bytes | None = None,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] | None = None,
    content_length: bool = True,
    receive: Receive | None = None,
) -> Answer:
    hdrs = list(headers or [])
    if body is not None and content_length:
        hdrs.append((b"content-length", str(len(body)).encode()))
    sent: list[ASGISendEvent] = []
    done = trio.Event()
    pending = [body or b""]

    async def default_receive() -> ASGIReceiveEvent:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        await done.wait()
        return {"type": "http.disconnect"}

    async def send(message: ASGISendEvent) -> None:
        sent.append(message)
        if message["type"] == "http.response.body" and not message.get("more_body", False):
            done.set()

    with trio.fail_after(600):  # virtual time: generous, and never a timing assertion
        await asgi(scope_of(method, path, query, hdrs), receive or default_receive, send)
    status: int | None = None
    out_headers: list[tuple[bytes, bytes]] = []
    chunks: list[bytes] = []
    for message in sent:
        if message["type"] == "http.response.start":
            status = message["status"]
            out_headers = [(bytes(k), bytes(v)) for k, v in message["headers"]]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))
    return Answer(status, out_headers, b"".join(chunks))


async def both(
    sides: tuple[Side, Side], method: str, path: str, *, served_fast: bool, **kwargs: Any
) -> tuple[Answer, Answer]:
    """The same request through the fast path's app and through Quart alone; equal answers."""
    fast, quart = sides
    before = fast.handed_to_quart
    a = await call_asgi(fast.app, method, path, **kwargs)
    b = await call_asgi(quart.app.asgi_app, method, path, **kwargs)
    assert (a.status, a.headers, a.body) == (b.status, b.headers, b.body)
    assert (fast.handed_to_quart == before) is served_fast, "served by the wrong path"
    return a, b


def header(answer: Answer, name: str) -> str | None:
    for k, v in answer.headers:
        if k == name.lower().encode():
            return v.decode()
    return None


def value(v: Any) -> bytes:
    return json.dumps(v).encode()


# --------------------------------------------------------------------------- success and 404


async def test_put_then_get_same_as_quart(sides: tuple[Side, Side]) -> None:
    a, _ = await both(sides, "PUT", KV + "k", body=value({"x": [1, 2, "é"]}), served_fast=True)
    assert a.status == 200 and a.json() == {"key": "k", "revision": 2, "created": True}
    assert header(a, "ETag") == '"2"'
    a, _ = await both(sides, "PUT", KV + "k", body=value(7), served_fast=True)
    assert a.json()["created"] is False
    for query in (b"", b"consistency=linearizable", b"consistency=stale"):
        a, _ = await both(sides, "GET", KV + "k", query=query, served_fast=True)
        assert a.status == 200 and a.body == b"7"
        assert header(a, "X-Beaver-Vault-Consistency") == (query.partition(b"=")[2].decode() or "linearizable")
        assert header(a, "X-Beaver-Vault-Applied-Index") == "3" and header(a, "ETag") == '"3"'
    assert sides[0].runtime.barriers == sides[1].runtime.barriers == 2  # stale: no barrier


@pytest.mark.parametrize(
    "key",
    ["a/b", "a//b", "a/", "ключ", "with space", "%41", "😀/x", "a?b", "x" * 64, "é" * 32],
)
async def test_keys_same_as_quart(sides: tuple[Side, Side], key: str) -> None:
    a, _ = await both(sides, "PUT", KV + key, body=b'"v"', served_fast=True)
    assert a.status == 200 and a.json()["key"] == key
    a, _ = await both(sides, "GET", KV + key, served_fast=True)
    assert a.body == b'"v"'


async def test_missing_key_same_as_quart(sides: tuple[Side, Side]) -> None:
    for query in (b"", b"consistency=stale"):
        a, _ = await both(sides, "GET", KV + "nope", query=query, served_fast=True)
        assert a.status == 404 and a.json()["key"] == "nope"
        assert header(a, "X-Beaver-Vault-Applied-Index") == "1"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{", "not valid JSON"),
        (b"", "empty"),
        (b"   ", "empty"),
        (b'"\xff"', "UTF-8"),
        (b"NaN", "NaN"),
        (b"[1, Infinity]", "Infinity"),
        (b"1e400", "out of range"),
        (b"[" * 9 + b"]" * 9, "deeper"),
        (b"[" * 5000 + b"]" * 5000, "larger"),  # > max_body_bytes: Quart's 413
        (b'"\\ud800"', "surrogate"),
        (b"1 2", "not valid JSON"),
    ],
)
async def test_bad_bodies_same_as_quart(sides: tuple[Side, Side], body: bytes, fragment: str) -> None:
    too_large = len(body) > OPTS.max_body_bytes
    a, _ = await both(sides, "PUT", KV + "k", body=body, served_fast=not too_large)
    assert a.status == (413 if too_large else 400) and fragment in a.json()["error"]
    assert a.json()["outcome"] == "not_applied"
    if too_large:
        assert header(a, "Connection") == "close"
    assert sides[0].runtime.log == sides[1].runtime.log == []


async def test_bad_keys_same_as_quart(sides: tuple[Side, Side]) -> None:
    for method, body in (("PUT", b"1"), ("GET", None)):
        a, _ = await both(sides, method, KV, body=body, served_fast=True)  # the empty key
        assert a.status == 400 and "empty" in a.json()["error"]
        a, _ = await both(sides, method, KV + "x" * 65, body=body, served_fast=True)
        assert a.status == 400 and "limit is 64 bytes" in a.json()["error"]
        a, _ = await both(sides, method, KV + "é" * 33, body=body, served_fast=True)
        assert a.status == 400
        # A bad key is refused before the body is looked at, as in Quart.
    a, _ = await both(sides, "PUT", KV + "x" * 65, body=b"{", served_fast=True)
    assert "limit is 64 bytes" in a.json()["error"]
    assert sides[0].runtime.log == sides[1].runtime.log == []


async def test_control_characters_in_keys_same_as_quart(sides: tuple[Side, Side]) -> None:
    for key in ("a\nb", "\x01", "esc\x1b", "del\x7f"):
        for method, body in (("PUT", b"1"), ("GET", None)):
            a, _ = await both(sides, method, KV + key, body=body, served_fast=True)
            assert a.status == 400 and "control character" in a.json()["error"]
    assert sides[0].runtime.log == sides[1].runtime.log == []


async def test_unusual_requests_go_to_quart(sides: tuple[Side, Side]) -> None:
    await both(sides, "PUT", KV + "k", body=b"1", served_fast=True)
    cases: list[dict[str, Any]] = [
        {"method": "PUT", "path": KV + "k", "body": b"2", "headers": [(b"if-match", b'"2"')]},
        {"method": "PUT", "path": KV + "n", "body": b"2", "headers": [(b"If-None-Match", b"*")]},
        {"method": "PUT", "path": KV + "k", "body": b"3", "headers": [(b"idempotency-key", b"abc")]},
        {"method": "PUT", "path": KV + "k", "body": b"4", "query": b"ttl=30s"},
        {"method": "PUT", "path": KV + "k", "body": b"5", "query": b"consistency=stale"},
        {"method": "PUT", "path": KV + "k", "body": b"6", "content_length": False},  # chunked
        {"method": "GET", "path": KV + "k", "query": b"meta=true"},
        {"method": "GET", "path": KV + "k", "query": b"consistency=bogus"},
        {"method": "GET", "path": KV + "k", "query": b"consistency=stale&meta=false"},
        {"method": "GET", "path": KV + "k", "headers": [(b"if-none-match", b'"2"')]},
        {"method": "DELETE", "path": KV + "k"},
        {"method": "GET", "path": "/api/v1/kv"},
        {"method": "POST", "path": KV + "k", "body": b"1"},
    ]
    for case in cases:
        method, path = case.pop("method"), case.pop("path")
        await both(sides, method, path, served_fast=False, **case)
    assert sides[0].runtime.log == sides[1].runtime.log


# --------------------------------------------------------------------------- runtime errors and leadership


@pytest.mark.parametrize(
    "exc",
    [
        Overloaded(),
        NoLeader("no leader known"),
        Unknown("write timed out after 2s"),
        Unknown("connection lost"),
        Rejected("superseded by another leader's entry; it was not applied", status=503),
    ],
)
async def test_runtime_errors_same_as_quart(sides: tuple[Side, Side], exc: Exception) -> None:
    for method, runtime_call, body in (("PUT", "write", b"1"), ("GET", "read_barrier", None)):
        for side in sides:
            side.runtime.fail_next(exc, runtime_call)
        a, _ = await both(sides, method, KV + "k", body=body, served_fast=True)
        assert a.status is not None and a.status >= 500 and a.json()["error"] == str(exc)


async def test_refused_write_same_as_quart(sides: tuple[Side, Side]) -> None:
    # A value the state machine refuses: the encoder's own limit or a 409 from apply().
    await both(sides, "PUT", KV + "k", body=value("x" * 1500), served_fast=True)


async def test_stuck_runtime_same_as_quart(sides: tuple[Side, Side]) -> None:
    for method, runtime_call, body in (("PUT", "write", b"1"), ("GET", "read_barrier", None)):
        for side in sides:
            side.runtime.hang_next(runtime_call)
        a, _ = await both(sides, method, KV + "k", body=body, served_fast=True)
        assert a.status == 504 and a.json()["outcome"] == "unknown"


async def test_bug_goes_to_quarts_500(sides: tuple[Side, Side]) -> None:
    for method, runtime_call, body, outcome in (
        ("PUT", "write", b"1", "unknown"),
        ("GET", "read_barrier", None, "not_applied"),
    ):
        for side in sides:
            side.runtime.fail_next(InvariantViolation("boom"), runtime_call)
        a, _ = await both(sides, method, KV + "k", body=body, served_fast=False)
        assert a.status == 500 and a.json()["outcome"] == outcome


async def test_not_leader_same_as_quart(sides: tuple[Side, Side]) -> None:
    await both(sides, "PUT", KV + "k", body=b"1", served_fast=True)
    for side in sides:
        side.runtime.follow("node2", None)  # no address known: 503 with the leader's id
    a, _ = await both(sides, "PUT", KV + "k", body=b"2", served_fast=False)
    assert a.status == 503 and a.json()["leader_id"] == "node2"
    a, _ = await both(sides, "GET", KV + "k", served_fast=False)
    assert a.status == 503
    # A stale read needs no leader: served here, from the local copy.
    a, _ = await both(sides, "GET", KV + "k", query=b"consistency=stale", served_fast=True)
    assert a.status == 200 and a.body == b"1"
    # Already forwarded once: never served by the fast path.
    forwarded = [(b"x-beaver-vault-forwarded-by", b"node3")]
    a, _ = await both(sides, "PUT", KV + "k", body=b"3", headers=forwarded, served_fast=False)
    assert a.status == 503 and a.json()["error"] == "leader changed, retry"
    for side in sides:
        side.runtime.follow("node2", "http://127.0.0.1:1")  # a leader nobody answers at
    a, _ = await both(sides, "PUT", KV + "k", body=b"4", served_fast=False)
    assert a.status is not None and a.status >= 500
    assert sides[0].runtime.log == sides[1].runtime.log and len(sides[0].runtime.log) == 1


async def test_not_leader_forwards_the_body(
    sides: tuple[Side, Side], nursery: trio.Nursery, autojump_clock: trio.testing.MockClock
) -> None:
    """A write handed over on NotLeader is forwarded with the body the fast path had read."""
    autojump_clock.autojump_threshold = float("inf")  # real sockets below: no virtual jumps
    leader_rt = FakeRuntime("node2")
    leader_app = create_app(leader_rt, OPTS)
    url = await serve(nursery, leader_app)
    fast, _ = sides
    fast.runtime.follow("node2", url)
    a = await call_asgi(fast.app, "PUT", KV + "fw", body=value({"v": "ü"}))
    assert a.status == 200 and a.json() == {"key": "fw", "revision": 2, "created": True}
    assert leader_rt.get_local("fw") is not None
    assert json.loads(leader_rt.get_local("fw").value) == {"v": "ü"}  # type: ignore[union-attr]
    assert fast.runtime.log == []


# --------------------------------------------------------------------------- transport


async def test_body_timeout_same_as_quart(sides: tuple[Side, Side]) -> None:
    for side in sides:
        side.app.config["BODY_TIMEOUT"] = 5
    sides[0].app.fast_kv.body_timeout_s = 5  # type: ignore[union-attr]

    async def never(_: list[int] = []) -> ASGIReceiveEvent:  # noqa: B006
        await trio.sleep_forever()
        raise AssertionError

    a, _ = await both(sides, "PUT", KV + "k", body=b"1", receive=never, served_fast=True)
    assert a.status == 408 and a.json()["outcome"] == "not_applied"


async def test_disconnect_before_the_body(sides: tuple[Side, Side]) -> None:
    async def gone() -> ASGIReceiveEvent:
        return {"type": "http.disconnect"}

    a, _ = await both(sides, "PUT", KV + "k", body=b"1", receive=gone, served_fast=True)
    assert a.status is None and sides[0].runtime.log == []


async def test_body_in_several_chunks(sides: tuple[Side, Side]) -> None:
    for side in sides:

        async def chunks(parts: list[bytes] = [b"[1,", b" 2", b",3]"]) -> ASGIReceiveEvent:  # noqa: B006
            if parts:
                return {"type": "http.request", "body": parts.pop(0), "more_body": bool(parts)}
            await trio.sleep_forever()
            raise AssertionError

        a = await call_asgi(
            side.app if side is sides[0] else side.app.asgi_app, "PUT", KV + "k", body=b"[1, 2,3]", receive=chunks
        )
        assert a.status == 200
    assert sides[0].runtime.log == sides[1].runtime.log
    assert sides[0].handed_to_quart == 0


async def test_metrics_same_as_quart(sides: tuple[Side, Side]) -> None:
    await both(sides, "PUT", KV + "k", body=b"1", served_fast=True)
    await both(sides, "PUT", KV + "k", body=b"{", served_fast=True)
    await both(sides, "GET", KV + "k", served_fast=True)
    await both(sides, "GET", KV + "zz", query=b"consistency=stale", served_fast=True)
    for side in sides:
        side.runtime.fail_next(Overloaded(), "write")
    await both(sides, "PUT", KV + "k", body=b"1", served_fast=True)

    def counted(side: Side) -> list[str]:
        text = side.app.extensions["beaver_vault.metrics"].render().decode()
        return sorted(
            line
            for line in text.splitlines()
            if line.startswith(("beaver_vault_http_requests_total", "beaver_vault_http_request_duration_seconds_count"))
        )

    fast_lines = counted(sides[0])
    assert fast_lines == counted(sides[1])
    assert 'beaver_vault_http_requests_total{method="PUT",route="/api/v1/kv/<key:key>",status="503"} 1.0' in fast_lines
    assert len(fast_lines) == 7  # statuses (PUT 200, 400, 503; GET 200, 404), then counts (PUT, GET)


# --------------------------------------------------------------------------- a real server


async def serve(nursery: trio.Nursery, app: BeaverVaultApp) -> str:
    config = HyperConfig()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    binds: list[str] = await nursery.start(
        lambda task_status: hypercorn.trio.serve(app, config, task_status=task_status)
    )
    return binds[0]


async def test_over_hypercorn_keep_alive(nursery: trio.Nursery, autojump_clock: trio.testing.MockClock) -> None:
    """One keep-alive connection: fast answers, a handed-over one and a 413 in between."""
    autojump_clock.autojump_threshold = float("inf")
    runtime = FakeRuntime()
    url = await serve(nursery, create_app(runtime, OPTS))
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:
        r = await client.put(KV + "a b/ü", content=b'{"n":1}')
        assert r.status_code == 200 and r.json() == {"key": "a b/ü", "revision": 2, "created": True}
        assert r.headers["etag"] == '"2"' and r.headers["content-type"] == "application/json"
        r = await client.get(KV + "a b/ü")
        assert r.status_code == 200 and r.content == b'{"n":1}'
        assert r.headers["x-beaver-vault-consistency"] == "linearizable"
        r = await client.put(KV + "k", content=b"NaN")
        assert r.status_code == 400 and r.json()["outcome"] == "not_applied"
        r = await client.get(KV + "a b/ü", params={"meta": "true"})  # Quart
        assert r.status_code == 200 and r.json()["version"] == 1
        r = await client.get(KV + "nope", params={"consistency": "stale"})
        assert r.status_code == 404 and r.headers["x-beaver-vault-consistency"] == "stale"
        r = await client.put(KV + "big", content=b"[" + b"1," * 2000 + b"1]")
        assert r.status_code == 413 and r.headers["connection"] == "close"
        r = await client.put(KV + "k", content=b"2")  # a new connection after the 413
        assert r.status_code == 200 and r.json()["revision"] == 3
