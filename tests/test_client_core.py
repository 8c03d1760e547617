"""The client's sans-I/O core, driven by hand: retry decisions, error mapping, SSE decoding and
the watch cursor; plus the sync and async I/O loops over httpx.MockTransport (no processes)."""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Generator
from typing import Any

import httpx
import pytest
import trio

from beaver_vault.client import (
    AsyncClient,
    BadRequest,
    Client,
    Conflict,
    NotFound,
    PreconditionFailed,
    RetryPolicy,
    Unavailable,
    UnknownOutcome,
    WatchCompacted,
    WatchEvent,
    _core,
)
from beaver_vault.client._core import Endpoints, Failed, Reply, Send, Sleep, SSEDecoder, WatchCursor

A, B, C = "http://a:1", "http://b:2", "http://c:3"
POLICY = RetryPolicy(max_attempts=5, backoff_initial_s=0.01, backoff_max_s=0.04)


def reply(status: int, body: Any, endpoint: str = A, **headers: str) -> Reply:
    return Reply(
        status, {k.lower().replace("_", "-"): v for k, v in headers.items()}, json.dumps(body).encode(), endpoint
    )


REFUSED = Failed(httpx.ConnectError("refused"), sent=False)
LOST = Failed(httpx.ReadError("connection reset"), sent=True)


class Plan:
    """Drives ``run_call`` and records the actions it asked for."""

    def __init__(self, call: _core.Call[Any], endpoints: tuple[str, ...] = (A, B, C)) -> None:
        self.endpoints = Endpoints(endpoints)
        self.gen: Generator[_core.Action, _core.Outcome | None, Any] = _core.run_call(
            call, self.endpoints, POLICY, random.Random(1)
        )
        self.actions: list[_core.Action] = [next(self.gen)]
        self.result: Any = None

    def answer(self, outcome: _core.Outcome) -> Plan:
        """Answer the pending Send (and skip any Sleep that follows)."""
        assert isinstance(self.actions[-1], Send), self.actions
        value: _core.Outcome | None = outcome
        while True:
            try:
                action = self.gen.send(value)
            except StopIteration as done:
                self.result = done.value
                return self
            self.actions.append(action)
            if isinstance(action, Send):
                return self
            value = None

    def sends(self) -> list[str]:
        return [a.endpoint for a in self.actions if isinstance(a, Send)]

    def sleeps(self) -> int:
        return sum(isinstance(a, Sleep) for a in self.actions)


# --- retry plan ---------------------------------------------------------------------------------


def test_success_is_parsed_and_the_endpoint_becomes_preferred() -> None:
    plan = Plan(_core.get_call("k")).answer(REFUSED).answer(reply(200, {"x": 1}, B))
    assert plan.result == {"x": 1}
    assert plan.sends() == [A, B] and plan.sleeps() == 0  # a refused connection fails over at once
    assert plan.endpoints.current() == B


def test_every_endpoint_refusing_backs_off_then_gives_up_unavailable() -> None:
    plan = Plan(_core.put_call("k", 1))
    with pytest.raises(Unavailable) as err:
        for _ in range(POLICY.max_attempts):
            plan.answer(REFUSED)
    assert plan.sends() == [A, B, C, A, B]
    assert plan.sleeps() == 1  # only after a whole round of refusals
    assert err.value.outcome == "not_applied"


def test_a_write_whose_request_may_have_been_sent_is_retried_with_the_same_key() -> None:
    call = _core.put_call("k", 1)
    assert call.idempotency_key and call.all_headers()[_core.IDEMPOTENCY_HEADER] == call.idempotency_key
    plan = Plan(call).answer(LOST).answer(reply(200, {"key": "k", "revision": 9, "created": True}, B))
    assert plan.result == _core.PutResult("k", 9, True)
    assert plan.sends() == [A, B]


def test_a_maybe_applied_write_that_runs_out_of_attempts_is_unknown_even_after_not_applied_answers() -> None:
    plan = Plan(_core.put_call("k", 1)).answer(LOST)
    with pytest.raises(UnknownOutcome):
        for _ in range(POLICY.max_attempts - 1):
            plan.answer(reply(503, {"error": "no leader", "outcome": "not_applied"}))


def test_a_write_without_idempotency_key_is_not_retried_after_it_may_have_been_sent() -> None:
    call = _core.Call("PUT", "/api/v1/kv/k", lambda r: None, write=True)
    with pytest.raises(UnknownOutcome):
        Plan(call).answer(LOST)


def test_a_read_is_retried_after_a_lost_answer() -> None:
    plan = Plan(_core.get_call("k")).answer(LOST).answer(reply(200, 5, B))
    assert plan.result == 5


def test_503_not_applied_is_retried_with_retry_after_capped() -> None:
    plan = Plan(_core.get_call("k")).answer(reply(503, {"error": "x", "outcome": "not_applied"}, retry_after="30"))
    assert plan.actions[1] == Sleep(POLICY.backoff_max_s)
    plan.answer(reply(200, 1, B))
    assert plan.result == 1


def test_504_unknown_for_a_write_exhausts_into_unknown_outcome() -> None:
    plan = Plan(_core.delete_call("k"))
    with pytest.raises(UnknownOutcome) as err:
        for _ in range(POLICY.max_attempts):
            plan.answer(reply(504, {"error": "timed out", "outcome": "unknown"}))
    assert err.value.status == 504


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (404, {"error": "key 'k' not found", "key": "k"}, NotFound),
        (404, {"error": "no such route", "path": "/api/v1/x", "outcome": "not_applied"}, BadRequest),
        (400, {"error": "bad key", "outcome": "not_applied"}, BadRequest),
        (413, {"error": "too big", "outcome": "not_applied"}, BadRequest),
        (409, {"error": "refused", "outcome": "not_applied"}, Conflict),
        (410, {"error": "re-list"}, WatchCompacted),
        (500, {"error": "internal error", "outcome": "unknown"}, UnknownOutcome),
    ],
)
def test_final_answers_raise_at_once(status: int, body: Any, error: type[Exception]) -> None:
    plan = Plan(_core.put_call("k", 1))
    with pytest.raises(error):
        plan.answer(reply(status, body))
    assert plan.sends() == [A]


def test_precondition_failed_carries_the_current_revision() -> None:
    body = {"error": "precondition failed: key 'k' is at revision 12", "outcome": "not_applied", "mod_revision": 12}
    with pytest.raises(PreconditionFailed) as err:
        Plan(_core.put_call("k", 1, if_revision=3)).answer(reply(412, body))
    assert err.value.current_revision == 12
    with pytest.raises(PreconditionFailed) as err:
        Plan(_core.put_call("k", 1, if_revision=3)).answer(reply(412, {"error": "x"}, etag='"7"'))
    assert err.value.current_revision == 7


def test_a_pinned_call_asks_only_its_endpoint() -> None:
    plan = Plan(_core.status_call(B + "/"))
    with pytest.raises(Unavailable):
        for _ in range(POLICY.max_attempts):
            plan.answer(REFUSED)
    assert set(plan.sends()) == {B}


# --- call shapes --------------------------------------------------------------------------------


def test_conditional_put_headers_query_and_body() -> None:
    call = _core.put_call("users/ä 1?", {"n": "é"}, if_revision=4, ttl=30)
    assert call.path == "/api/v1/kv/users/%C3%A4%201%3F"
    headers = call.all_headers()
    assert headers["If-Match"] == '"4"' and headers["Content-Type"] == "application/json"
    assert call.params == (("ttl", "30s"),)
    assert json.loads(call.body or b"") == {"n": "é"}
    assert _core.put_call("k", 1, if_absent=True).all_headers()["If-None-Match"] == "*"
    assert _core.put_call("k", 1, ttl=1.5).params == (("ttl", "1500ms"),)
    with pytest.raises(ValueError):
        _core.put_call("k", 1, if_revision=1, if_absent=True)
    with pytest.raises(ValueError):
        _core.get_call("")


def test_every_write_gets_a_fresh_key_and_reads_none() -> None:
    writes: list[_core.Call[Any]] = [
        _core.put_call("k", 1),
        _core.put_call("k", 1),
        _core.delete_call("k"),
        _core.delete_prefix_call("p/"),
        _core.txn_call([], [], []),
        _core.join_call("n", "h:1"),
        _core.remove_call("n", force=True),
        _core.transfer_leadership_call(),
    ]
    keys = [w.idempotency_key for w in writes]
    assert all(keys) and len(set(keys)) == len(keys) and all(w.write for w in writes)
    assert all(r.idempotency_key is None and not r.write for r in (_core.get_call("k"), _core.list_call("p")))
    assert json.loads(_core.remove_call("n", force=True).body or b"") == {"NodeID": "n", "Force": True}


def test_listing_is_parsed_in_both_shapes() -> None:
    full = {
        "items": [{"key": "a", "value": 1, "create_revision": 2, "mod_revision": 3, "version": 2}],
        "count": 5,
        "revision": 9,
        "more": True,
        "next_after": "a",
    }
    page = _core.list_call("", limit=1).parse(reply(200, full))
    assert page.items == (_core.KeyValue("a", 1, 2, 3, 2),) and page.keys == ("a",)
    assert (page.count, page.revision, page.more, page.next_after) == (5, 9, True, "a")
    keys = _core.list_call("", keys_only=True).parse(
        reply(200, {"keys": ["x", "y"], "count": 2, "revision": 4, "more": False, "next_after": None})
    )
    assert keys.keys == ("x", "y") and keys.items == () and keys.next_after is None


def test_endpoints_are_normalised() -> None:
    assert _core.normalize_endpoints(" http://a:1/, b:2 ,,http://a:1") == ("http://a:1", "http://b:2")
    with pytest.raises(ValueError):
        _core.normalize_endpoints(" , ")
    with pytest.raises(ValueError):
        _core.normalize_endpoints("ftp://x")


# --- watch pieces -------------------------------------------------------------------------------


def test_sse_decoder() -> None:
    d = SSEDecoder()
    lines = [": watching", "", "id: 5", 'data: {"a":', "data: 1}", "", "event: error", "data: {}", ""]
    out = [m for m in (d.feed(line) for line in lines) if m is not None]
    assert [(m.event, m.data, m.id) for m in out] == [("message", '{"a":\n1}', "5"), ("error", "{}", None)]


def ev(revision: int, key: str = "k") -> WatchEvent:
    return WatchEvent("put", key, 1, revision)


def test_watch_cursor_drops_what_a_reconnection_replays_even_inside_one_revision() -> None:
    cursor = WatchCursor(next_revision=5)
    assert cursor.from_revision() == 5
    assert [cursor.accept(e) for e in (ev(5), ev(7, "a"), ev(7, "b"))] == [True, True, True]
    cursor.reconnected()  # the connection broke after two of revision 7's three events
    assert cursor.from_revision() == 7
    replay = [ev(7, "a"), ev(7, "b"), ev(7, "c"), ev(8)]
    assert [cursor.accept(e) for e in replay] == [False, False, True, True]
    cursor.reconnected()
    assert [cursor.accept(e) for e in (ev(6), ev(8), ev(9))] == [False, False, True]


def session(endpoints: tuple[str, ...] = (A, B)) -> _core.WatchSession:
    policy = RetryPolicy(watch_max_reconnects=3, backoff_initial_s=0.01, backoff_max_s=0.02)
    return _core.WatchSession("p/", WatchCursor(None), Endpoints(endpoints), policy, random.Random(0))


def test_watch_session_reconnects_elsewhere_and_gives_up_after_its_budget() -> None:
    s = session()
    assert s.connect() == (A, [("prefix", "p/")])
    s.opened(None)
    for line in ("id: 3", 'data: {"type":"put","key":"p/x","value":1,"revision":3}'):
        assert s.feed(line) == []
    assert s.feed("") == [WatchEvent("put", "p/x", 1, 3)]
    assert s.broken(httpx.ReadError("gone")) >= 0
    assert s.connect() == (B, [("prefix", "p/"), ("from_revision", "3")])
    with pytest.raises(Unavailable):
        for _ in range(3):
            s.broken(httpx.ConnectError("refused"))


def test_watch_session_server_errors() -> None:
    s = session()
    s.connect()
    s.feed("event: error")
    s.feed('data: {"error": "the watcher fell behind"}')
    with pytest.raises(_core.StreamEnded):
        s.feed("")
    s.connect()
    with pytest.raises(WatchCompacted):
        s.opened(reply(410, {"error": "revision 1 is older than the watch history kept here; re-list"}))
    assert s.opened(reply(503, {"error": "too many watchers", "outcome": "not_applied"})) is False


# --- the I/O loops, over a mock transport -------------------------------------------------------


def flaky_handler(seen: list[httpx.Request]) -> Callable[[httpx.Request], httpx.Response]:
    """Node a is down; node b loses the answer to the first write it gets, then works."""

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if request.url.host == "a":
            raise httpx.ConnectError("refused", request=request)
        if request.method == "PUT" and sum(r.method == "PUT" and r.url.host == "b" for r in seen) == 1:
            raise httpx.ReadError("reset after sending", request=request)
        if request.method == "PUT":
            return httpx.Response(200, json={"key": "k", "revision": 4, "created": True})
        return httpx.Response(404, json={"error": "key 'k' not found", "key": "k"})

    return handle


def test_sync_client_fails_over_and_retries_a_write_with_one_key() -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(transport=httpx.MockTransport(flaky_handler(seen)))
    with Client([A, B], policy=POLICY, http=http) as client:
        assert client.put("k", {"v": 1}) == _core.PutResult("k", 4, True)
        with pytest.raises(NotFound):
            client.get("k")
    http.close()
    puts = [r for r in seen if r.method == "PUT"]
    assert [r.url.host for r in puts] == ["a", "b", "a", "b"]  # after b lost the answer, a is tried again
    assert len({r.headers[_core.IDEMPOTENCY_HEADER] for r in puts}) == 1


async def test_async_client_fails_over_and_retries_a_write_with_one_key() -> None:
    seen: list[httpx.Request] = []
    http = httpx.AsyncClient(transport=httpx.MockTransport(flaky_handler(seen)))
    async with AsyncClient([A, B], policy=POLICY, http=http) as client:
        assert await client.put("k", {"v": 1}) == _core.PutResult("k", 4, True)
        with pytest.raises(NotFound):
            await client.get("k")
    await http.aclose()
    puts = [r for r in seen if r.method == "PUT"]
    assert len(puts) == 4 and len({r.headers[_core.IDEMPOTENCY_HEADER] for r in puts}) == 1


async def test_async_pages_follow_next_after_and_may_be_left_early() -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        after = request.url.params.get("after")
        keys = ["k1", "k2"] if after is None else ["k3"]
        more = after is None
        body = {"keys": keys, "count": 3, "revision": 5, "more": more, "next_after": keys[-1] if more else None}
        return httpx.Response(200, json=body)

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    async with AsyncClient(A, policy=POLICY, http=http) as client:
        assert [k async for k in client.keys("k", page_size=2)] == ["k1", "k2", "k3"]
        assert [p.keys async for p in client.pages("k", page_size=2, keys_only=True)] == [("k1", "k2"), ("k3",)]
        async for key in client.keys("k"):
            assert key == "k1"
            break  # nothing left for the garbage collector (filterwarnings = error would say so)
    await http.aclose()


def sse_handler(request: httpx.Request) -> httpx.Response:
    if request.url.path.endswith("/watch"):
        start = int(request.url.params["from_revision"])
        lines = [": watching", ""]
        for rev in range(start, start + 3):
            lines += [f"id: {rev}", f'data: {{"type":"put","key":"w/{rev}","value":{rev},"revision":{rev}}}', ""]
        return httpx.Response(200, content="\n".join(lines).encode(), headers={"Content-Type": "text/event-stream"})
    return httpx.Response(200, json={"key": "w/x", "revision": 1, "created": True})


def test_async_client_runs_under_asyncio_too() -> None:
    import asyncio

    async def main() -> list[int]:
        http = httpx.AsyncClient(transport=httpx.MockTransport(sse_handler))
        async with AsyncClient(A, policy=POLICY, http=http) as client:
            assert (await client.put("w/x", 1)).revision == 1
            seen: list[int] = []
            async with client.watch("w/", from_revision=4) as watch:
                async for event in watch:
                    seen.append(event.revision)
                    if len(seen) == 5:  # 3 from the first stream, then a reconnection from revision 6
                        break
        await http.aclose()
        return seen

    assert asyncio.run(main()) == [4, 5, 6, 7, 8]


def test_sync_watch_resumes_after_the_stream_ends() -> None:
    http = httpx.Client(transport=httpx.MockTransport(sse_handler))
    with Client(A, policy=POLICY, http=http) as client, client.watch("w/", from_revision=10) as watch:
        assert [e.revision for _, e in zip(range(5), watch, strict=False)] == [10, 11, 12, 13, 14]
        assert watch.last_revision == 14
    http.close()


class _EchoStream:
    """An in-memory server for ``AsyncPipe``: answers every request frame (200, its id) and
    records each ``send`` the client makes."""

    def __init__(self) -> None:
        from beaver_vault import wire

        self.wire = wire
        self.reader = wire.FrameReader(wire.DEFAULT_MAX_FRAME_BYTES)
        self.sends: list[int] = []  # frames per send
        self.answers: list[bytes] = []
        self.ready = trio.Event()

    async def send(self, data: bytes) -> None:
        self.reader.feed(data)
        frames = self.reader.frames()
        self.sends.append(len(frames))
        for payload, _ in frames:
            assert payload is not None
            header, _body = self.wire.decode(payload)
            self.answers.append(self.wire.encode({"id": header["id"], "status": 200}, b'"ok"'))
        self.ready.set()

    async def receive(self, max_bytes: int = 65536) -> bytes:
        while not self.answers:
            await self.ready.wait()
            self.ready = trio.Event()
        await trio.sleep(0)
        out = b"".join(self.answers)
        self.answers.clear()
        return out

    async def aclose(self) -> None:
        pass


async def test_async_pipe_many_tasks_each_request_gets_its_own_answer() -> None:
    from beaver_vault.client._pipelined import AsyncPipe

    stream = _EchoStream()
    pipe = AsyncPipe(stream)  # type: ignore[arg-type]
    got: list[tuple[int, bytes | None]] = []

    async def task(i: int) -> None:
        for _ in range(5):
            header, body = await pipe.request({"op": "get", "key": f"k{i}"})
            got.append((header["status"], body))

    async with trio.open_nursery() as nursery:
        for i in range(16):
            nursery.start_soon(task, i)
    assert got == [(200, b'"ok"')] * 80
    assert sum(stream.sends) == 80  # every frame sent once, whole
    assert pipe.in_flight() == 0


def test_writes_carry_this_process_s_client_name_and_keys_that_count_up() -> None:
    calls = [_core.put_call("k", i) for i in range(300)]
    keys = [c.idempotency_key or "" for c in calls]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)  # each new, and in order as text
    names = {c.all_headers()[_core.CLIENT_HEADER] for c in calls}
    assert len(names) == 1 and names.pop().startswith("py-")
    read = _core.get_call("k")
    assert _core.CLIENT_HEADER not in read.all_headers()  # only requests to remember carry it


def test_a_forked_child_writes_under_a_name_of_its_own() -> None:
    """A child shares its parent's counter at the fork: under the parent's name its keys would
    repeat the parent's next ones, and the cluster would answer its writes as duplicates."""
    import os

    parent = _core.put_call("k", 1).all_headers()[_core.CLIENT_HEADER]
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its name, then leave at once (no pytest teardown here)
        try:
            os.write(w, _core.put_call("k", 1).all_headers()[_core.CLIENT_HEADER].encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        child = os.read(r, 200).decode()
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    assert child.startswith("py-") and child != parent
    assert _core.put_call("k", 1).all_headers()[_core.CLIENT_HEADER] == parent  # the parent keeps its own
