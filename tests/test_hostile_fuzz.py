"""Hypothesis-driven fuzzing of the HTTP routes, in process (issue 11, item 8).

The whole ASGI stack of a node (the request guard, the fast path, Quart and every route)
around a real single-node ``NodeRuntime`` (memory storage, already leader), driven with raw
ASGI messages: the request target and headers reach the app exactly as drawn
(``tests/hostile_strategies.py``), as Hypercorn would hand them over. The runtime and the app
live in a Trio loop on a helper thread for the whole module; each example is one request sent
to it with ``trio.from_thread.run``. Every answer must be:

* never a 5xx (the only exception: ``/api/v1/backup`` is 501 on a node without a storage
  file, which in-memory storage is);
* a 4xx with a JSON object carrying a non-empty ``error`` (and ``outcome`` ``not_applied`` if
  present);
* for a 4xx, the node's state unchanged: the same applied index, last log index, term and
  membership, and the same keys and values (a 412 failed precondition and a 409 refusal by
  the state machine go through the log by design: for them the keys, values, term and
  members are compared).

The smaller run against the real cluster is in tests/test_hostile_http.py.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote_to_bytes

import pytest
import trio
import trio.from_thread
from hostile_strategies import Request, raw_requests
from hypothesis import HealthCheck, given, settings

from beaver_vault.api import ApiOptions, create_app
from beaver_vault.node.runtime import NodeRuntime, RuntimeOptions
from beaver_vault.storage.memory import MemoryStorage


@dataclass
class Answer:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes

    def header(self, name: bytes) -> bytes | None:
        return next((v for n, v in self.headers if n.lower() == name), None)


class Node:
    """A single-node runtime and its app, served from a Trio loop on a helper thread."""

    def __init__(self) -> None:
        self.token: trio.lowlevel.TrioToken | None = None
        self.ready = threading.Event()
        self.stop: trio.Event | None = None
        self.error: BaseException | None = None
        self.runtime: NodeRuntime | None = None
        self.app: Any = None
        self.thread = threading.Thread(target=self._main, daemon=True)

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            self.error = exc
            self.ready.set()

    async def _serve(self) -> None:
        self.token = trio.lowlevel.current_trio_token()
        self.stop = trio.Event()
        rt = NodeRuntime(
            node_id="node1",
            storage=MemoryStorage(),
            options=RuntimeOptions(raft_address="127.0.0.1:7000", http_address="http://127.0.0.1:8000", seed=1),
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(rt.run)
            with trio.fail_after(30):
                while rt.status().role != "leader":
                    await trio.sleep(0.02)
            self.runtime = rt
            self.app = create_app(rt, ApiOptions(request_timeout_s=2.0, body_timeout_s=1.0))
            async with self.app.test_app():
                self.ready.set()
                await self.stop.wait()
            nursery.cancel_scope.cancel()

    def start(self) -> None:
        self.thread.start()
        self.ready.wait(60)
        if self.error is not None:
            raise self.error
        assert self.token is not None and self.runtime is not None, "the node did not start"

    def close(self) -> None:
        if self.stop is not None and self.token is not None:
            trio.from_thread.run_sync(self.stop.set, trio_token=self.token)
        self.thread.join(30)

    def call(self, fn: Any, *args: Any) -> Any:
        return trio.from_thread.run(fn, *args, trio_token=self.token)

    # ------------------------------------------------------------------ one request

    async def request(self, req: Request) -> Answer:
        method, target, headers, body = req
        raw_path, _, query = target.partition(b"?")
        hdrs = [(b"host", b"node1")] + [(n.lower().encode("latin-1"), v.encode("utf-8")) for n, v in headers]
        if body is not None:
            hdrs.append((b"content-length", str(len(body)).encode()))
        scope = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": method,
            "scheme": "http",
            "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": hdrs,
            "client": ("127.0.0.1", 40000),
            "server": ("127.0.0.1", 8000),
            "extensions": {},
            "state": {},
        }
        messages = [{"type": "http.request", "body": body or b"", "more_body": False}]
        answer = Answer(0, [], b"")
        done = trio.Event()

        async def receive() -> dict[str, Any]:
            if messages:
                return messages.pop(0)
            await done.wait()
            return {"type": "http.disconnect"}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                answer.status = message["status"]
                answer.headers = list(message.get("headers", []))
                if (answer.header(b"content-type") or b"").startswith(b"text/event-stream"):
                    done.set()  # a watch that was accepted: it streams until the client leaves
            elif message["type"] == "http.response.body":
                answer.body += message.get("body", b"")
                if not message.get("more_body", False) or len(answer.body) > 1_000_000:
                    done.set()

        async with trio.open_nursery() as nursery:

            async def run_app() -> None:
                await self.app(scope, receive, send)
                done.set()

            nursery.start_soon(run_app)
            with trio.move_on_after(10):
                await done.wait()
            nursery.cancel_scope.cancel()  # a stream (SSE, a backup) is not read to its end
        return answer

    def snapshot(self) -> tuple[Any, ...]:
        rt = self.runtime
        assert rt is not None
        st = rt.status()
        rows = tuple((k, r.value, r.mod_revision) for k, r in rt.scan("", None, 10_000))
        return rt.applied_index(), st.last_log_index, st.term, st.members, rows


@pytest.fixture(scope="module")
def node() -> Iterator[Node]:
    n = Node()
    n.start()
    try:
        yield n
    finally:
        n.close()


def check_answer(req: Request, answer: Answer) -> None:
    method, target, _, _ = req
    where = (method, target[:160], req[2], (req[3] or b"")[:160], answer.status, answer.body[:300])
    assert answer.status != 0, ("no answer", where)
    if answer.status >= 500:
        assert answer.status == 501 and target.startswith(b"/api/v1/backup"), ("a 5xx", where)
    if 400 <= answer.status < 500:
        assert (answer.header(b"content-type") or b"").startswith(b"application/json"), where
        body = json.loads(answer.body)
        assert isinstance(body, dict) and isinstance(body.get("error"), str) and body["error"], where
        assert body.get("outcome", "not_applied") == "not_applied", where


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(req=raw_requests(with_watch=True, single_node=True))
def test_random_requests_in_process(node: Node, req: Request) -> None:
    before = node.call(_snapshot, node)
    answer = node.call(node.request, req)
    check_answer(req, answer)
    if 400 <= answer.status < 500:
        after = node.call(_snapshot, node)
        if answer.status in (409, 412):
            # A failed precondition (412) or a refusal by the state machine (409) goes through the
            # log by design and changes nothing: the keys, values and members must be the same.
            assert (after[2:]) == (before[2:]), ("a refused request changed the data", req, answer.body[:300])
        else:
            assert after == before, ("a refused request changed the state", req, answer.body[:300])


async def _snapshot(node: Node) -> tuple[Any, ...]:
    return node.snapshot()


def test_the_fuzzer_reaches_the_routes(node: Node) -> None:
    """The strategies are not all bounced at the door: a valid write and a valid read get
    through, so the fuzzing exercises the routes behind the validation too."""
    put = node.call(node.request, ("PUT", b"/api/v1/kv/fuzz/reached", [], b'{"ok": true}'))
    assert put.status == 200, put.body
    got = node.call(node.request, ("GET", b"/api/v1/kv/fuzz/reached", [], None))
    assert (got.status, json.loads(got.body)) == (200, {"ok": True})
    last = node.call(node.request, ("POST", b"/api/v1/raft/remove", [], b'{"NodeID": "node1"}'))
    assert last.status == 409 and "last voter" in json.loads(last.body)["error"], last.body
