"""The fast path: plain single-key reads and writes answered in front of Quart.

Theory of operation: Quart costs most of a request's CPU here (a nursery and two tasks per
request, contexts, werkzeug routing and headers, before/after hooks, three ASGI sends). The
two requests that carry the load, ``PUT /api/v1/kv/<key>`` and ``GET /api/v1/kv/<key>``, are
simple enough to answer straight from ASGI. :class:`FastKV` sits in front of the Quart app
(``BeaverVaultApp.__call__``) and serves ONLY the plain cases:

* ``PUT`` with no query string and a ``Content-Length`` within ``max_body_bytes`` (so the
  body is bounded before a byte of it is read);
* ``GET`` with no query string or exactly ``consistency=linearizable`` / ``consistency=stale``;
* no ``If-Match``, ``If-None-Match``, ``Idempotency-Key``, ``X-Beaver-Vault-Forwarded-By``,
  ``Expect`` or ``Transfer-Encoding`` header (and, for a GET, no body);
* a path that the router would give to the key routes (``/api/v1/kv/`` as decoded).

The key is decoded from the raw path by the one rule of ``keys.py``, as the Quart routes do.

Everything else goes to Quart untouched. What the fast path answers, it answers as the Quart
routes do, byte for byte (``tests/test_api_fast.py`` compares the two): the same checks in the
same order, made by the same functions (``validation.check_key``, ``parse_json_body``,
``kv_routes.encode_command`` / ``put_answer`` / ``key_not_found``, ``ApiContext.bounded``),
the same error mapping (``errors.error_response``, ``http_error_response``), the same headers
and the same metrics (route template ``/api/v1/kv/<key:key>``).

Two outcomes are handed over to Quart instead: ``NotLeader`` (the request must be forwarded to
the leader, or refused once already forwarded) and any unexpected exception (Quart's 500 path,
logging included). Such a request is passed to the Quart app with the body it already read
replayed, and the exception in the scope (``RAISE_IN_QUART``); ``create_app``'s before-request
hook raises it, so Quart's own error handlers answer it and its after-request hook counts it.
``NotLeader`` is only ever raised by the runtime before anything was proposed, so nothing
happened yet either way.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any, cast

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, HTTPScope, Scope
from quart import Response
from werkzeug.exceptions import RequestTimeout

from beaver_vault.api.context import API_PREFIX, APPLIED_INDEX_HEADER, CONSISTENCY_HEADER, ApiContext
from beaver_vault.api.errors import error_response, http_error_response, json_text
from beaver_vault.api.keys import scope_key
from beaver_vault.api.kv_routes import encode_command, key_not_found, put_answer, write_headers
from beaver_vault.api.metrics import ApiMetrics
from beaver_vault.api.validation import check_key, parse_json_body
from beaver_vault.errors import BeaverVaultError, NotLeader
from beaver_vault.kv import commands

ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]

# The scope key under which a handed-over request carries the exception Quart must raise.
RAISE_IN_QUART = "beaver_vault.raise"
KEY_ROUTE = f"{API_PREFIX}/kv/<key:key>"  # the Quart rule, as the metrics label it
_KEY_PATH = f"{API_PREFIX}/kv/"
# Headers that make a request something else than the plain case: left to Quart.
_NOT_PLAIN = frozenset(
    (b"if-match", b"if-none-match", b"idempotency-key", b"x-beaver-vault-forwarded-by", b"expect", b"transfer-encoding")
)
_READ_LEVELS = {b"": "linearizable", b"consistency=linearizable": "linearizable", b"consistency=stale": "stale"}
_LEVEL_BYTES = {"linearizable": b"linearizable", "stale": b"stale"}
_CONSISTENCY = CONSISTENCY_HEADER.lower().encode()
_APPLIED_INDEX = APPLIED_INDEX_HEADER.lower().encode()
_CONTENT_TYPE = (b"content-type", b"application/json")


class _HandOver(Exception):
    """Internal: let Quart answer this request (``exc`` raised in its before-request hook)."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc


class FastKV:
    """An ASGI app: the plain single-key cases itself, everything else by ``app`` (Quart)."""

    def __init__(self, app: ASGIApp, ctx: ApiContext, metrics: ApiMetrics, *, body_timeout_s: float | None) -> None:
        self.app = app
        self.ctx = ctx
        self.runtime = ctx.runtime
        self.opts = ctx.opts
        self.metrics = metrics
        self.body_timeout_s = float("inf") if body_timeout_s is None else float(body_timeout_s)

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "http" and scope["path"].startswith(_KEY_PATH) and not scope.get("root_path"):
            method = scope["method"]
            if method == "PUT" and not scope["query_string"]:
                length = self._plain_length(scope)
                if length is not None and 0 <= length <= self.opts.max_body_bytes:
                    await self._put(scope, receive, send)
                    return
            elif method == "GET":
                level = _READ_LEVELS.get(scope["query_string"])
                if level is not None and self._plain_length(scope) in (-1, 0):
                    await self._get(scope, receive, send, level)
                    return
        await self.app(scope, receive, send)

    @staticmethod
    def _plain_length(scope: HTTPScope) -> int | None:
        """The declared body length of a plain request (-1: none declared); None: not plain."""
        length = -1
        for name, value in scope["headers"]:
            name = name.lower()
            if name in _NOT_PLAIN:
                return None
            if name == b"content-length":
                if not value.isdigit() or len(value) > 18:
                    return None
                length = int(value)
        return length

    # ------------------------------------------------------------------ PUT /api/v1/kv/<key>

    async def _put(self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        started = time.perf_counter()
        body: bytes | None = b""
        with trio.move_on_after(self.body_timeout_s) as body_scope:
            body = await self._read_body(receive)
        if body_scope.cancelled_caught:
            await self._send_response(send, self._http_error(RequestTimeout(), scope), "PUT", started)
            return
        if body is None:
            return  # the client went away: Quart would not answer either
        if len(body) > self.opts.max_body_bytes:  # cannot happen over h11 (framing); Quart decides
            await self.app(scope, _replay(body, receive), send)
            return
        try:
            opts = self.opts
            key = check_key(scope_key(scope), max_key_bytes=opts.max_key_bytes)
            value = parse_json_body(body, max_body_bytes=opts.max_body_bytes, max_json_depth=opts.max_json_depth).value
            command = encode_command(commands.put, key, value)
            try:
                result = await self.ctx.bounded(self.runtime.write(command, timeout_s=opts.request_timeout_s))
            except NotLeader as exc:
                raise _HandOver(exc) from None
            headers = write_headers(result)
            text = json_text(put_answer(key, result, headers)).encode()
        except BeaverVaultError as exc:
            await self._send_response(send, error_response(exc), "PUT", started)
            return
        except _HandOver as hand:
            await self.app(_handed_over(scope, hand.exc), _replay(body, receive), send)
            return
        except Exception as exc:  # a bug: Quart's 500 path (logged, outcome unknown for a write)
            await self.app(_handed_over(scope, exc), _replay(body, receive), send)
            return
        raw = [(name.lower().encode(), value.encode()) for name, value in headers.items()]
        await self._send(send, 200, raw, text)
        self.metrics.observe(KEY_ROUTE, "PUT", 200, time.perf_counter() - started)

    # ------------------------------------------------------------------ GET /api/v1/kv/<key>

    async def _get(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable, level: str
    ) -> None:
        started = time.perf_counter()
        runtime = self.runtime
        try:
            key = check_key(scope_key(scope), max_key_bytes=self.opts.max_key_bytes)
            if level == "linearizable":
                try:
                    await self.ctx.bounded(runtime.read_barrier(timeout_s=self.opts.request_timeout_s))
                except NotLeader as exc:
                    raise _HandOver(exc) from None
            # No await from here on: the index reported is exactly the state that was read.
            applied_index = runtime.applied_index()
            record = runtime.get_local(key)
        except BeaverVaultError as exc:
            await self._send_response(send, error_response(exc), "GET", started)
            return
        except _HandOver as hand:
            await self.app(_handed_over(scope, hand.exc), receive, send)
            return
        except Exception as exc:  # a bug: Quart's 500 path
            await self.app(_handed_over(scope, exc), receive, send)
            return
        if record is None:
            headers = {CONSISTENCY_HEADER: level, APPLIED_INDEX_HEADER: str(applied_index)}
            await self._send_response(send, key_not_found(key, headers), "GET", started)
            return
        raw = [
            (_CONSISTENCY, _LEVEL_BYTES[level]),
            (_APPLIED_INDEX, str(applied_index).encode()),
            (b"etag", f'"{record.mod_revision}"'.encode()),
        ]
        await self._send(send, 200, raw, record.value.encode())
        self.metrics.observe(KEY_ROUTE, "GET", 200, time.perf_counter() - started)

    # ------------------------------------------------------------------ plumbing

    @staticmethod
    async def _read_body(receive: ASGIReceiveCallable) -> bytes | None:
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] == "http.request":
                chunks.append(message.get("body", b""))
                if not message.get("more_body", False):
                    return chunks[0] if len(chunks) == 1 else b"".join(chunks)
            elif message["type"] == "http.disconnect":
                return None

    def _http_error(self, exc: Any, scope: HTTPScope) -> Response:
        return http_error_response(
            exc, method=scope["method"], path=scope["path"], max_body_bytes=self.opts.max_body_bytes
        )

    @staticmethod
    async def _send(send: ASGISendCallable, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """One response as Quart sends it (its headers, then content-type and content-length),
        in two ASGI messages rather than Quart's three."""
        headers.append(_CONTENT_TYPE)
        headers.append((b"content-length", str(len(body)).encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})

    async def _send_response(self, send: ASGISendCallable, response: Response, method: str, started: float) -> None:
        """A (rare) answer built by the shared error functions, sent as Quart would send it."""
        body = await response.get_data(as_text=False)
        headers = [(name.lower().encode(), value.encode()) for name, value in response.headers.items()]
        await send({"type": "http.response.start", "status": response.status_code, "headers": headers})
        await send({"type": "http.response.body", "body": body, "more_body": False})
        self.metrics.observe(KEY_ROUTE, method, response.status_code, time.perf_counter() - started)


def _handed_over(scope: HTTPScope, exc: BaseException) -> Scope:
    """The request's scope, carrying ``exc`` for Quart's before-request hook to raise."""
    return cast(HTTPScope, {**scope, RAISE_IN_QUART: exc})


def _replay(body: bytes, receive: ASGIReceiveCallable) -> ASGIReceiveCallable:
    """A ``receive`` that first yields the body already read, then defers to the real one."""
    pending = [body]

    async def replayed() -> ASGIReceiveEvent:
        if pending:
            return {"type": "http.request", "body": pending.pop(), "more_body": False}
        return await receive()

    return replayed
