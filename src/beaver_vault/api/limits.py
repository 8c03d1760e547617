"""Request limits: what every HTTP request must satisfy before any route sees it.

Theory of operation: :class:`RequestGuard` is the outermost ASGI layer of a node's API (in front
of the fast path and Quart). It answers, by itself and before a byte of the body is read:

* ``414`` when the request target (path and query) is longer than ``url_max_bytes``;
* ``431`` when the request's header block is larger than ``header_max_bytes``;
* ``400`` when the framing is ambiguous: both ``Content-Length`` and ``Transfer-Encoding``, or
  several ``Content-Length`` headers (a request smuggling vector; RFC 9112 section 6.3);
* ``429`` with ``Retry-After`` when the client's address has used up its token bucket
  (``client_rate_per_s`` refilled per second, ``client_burst`` at most; 0 turns it off).

Bodies are bounded as they are read: the guard counts the bytes of every body (chunked ones
have no declared length) and answers ``413`` as soon as they pass ``body_max_bytes``; Quart
and the fast path answer ``413`` past ``max_body_bytes`` for a declared length and ``408`` when the body has not
arrived ``body_timeout_s`` after the request (``BODY_TIMEOUT``). The guard keeps a backstop
deadline one second later (answered ``408`` if nothing answered yet) and makes every answer
that says ``Connection: close`` really close: once such a response is complete it stops the
application, which may still be waiting for the rest of a body nobody will read; without that
the server kept the socket open after a 413.

The guard never changes what a well-formed request does: it only ever answers instead of the
application, before the application has started its response. Every refusal is counted by
reason (``limited`` on ``/metrics``).
"""

from __future__ import annotations

import json
import math
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

import trio
from hypercorn.typing import ASGIReceiveCallable, ASGIReceiveEvent, ASGISendCallable, ASGISendEvent, Scope

BACKSTOP_S = 1.0  # the guard's body deadline trails the application's own by this much
ASGIApp = Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class LimitOptions:
    url_max_bytes: int = 8 * 1024
    header_max_bytes: int = 8 * 1024
    body_timeout_s: float = 5.0
    client_rate_per_s: float = 5_000.0  # 0: no per-client rate limit
    client_burst: int = 10_000
    clients_tracked_max: int = 10_000  # token buckets kept (least recently seen forgotten first)
    body_max_bytes: int | None = None  # a body (chunked too) beyond this is refused 413 as it arrives

    def __post_init__(self) -> None:
        for name in ("url_max_bytes", "header_max_bytes", "client_burst", "clients_tracked_max"):
            if getattr(self, name) < 1:
                raise ValueError(f"LimitOptions.{name} must be at least 1")
        if not self.body_timeout_s > 0:
            raise ValueError("LimitOptions.body_timeout_s must be positive")
        if self.client_rate_per_s < 0:
            raise ValueError("LimitOptions.client_rate_per_s must not be negative")


class RateLimiter:
    """One token bucket per client address; a bounded table (LRU)."""

    def __init__(self, rate_per_s: float, burst: int, tracked_max: int) -> None:
        self.rate = rate_per_s
        self.burst = float(burst)
        self.tracked_max = tracked_max
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, at)

    def take(self, client: str, now: float) -> float:
        """0.0 if the request may go ahead (one token taken), else the seconds until it may."""
        if self.rate <= 0:
            return 0.0
        tokens, at = self._buckets.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self._buckets[client] = (tokens, now)
        while len(self._buckets) > self.tracked_max:
            self._buckets.popitem(last=False)
        return wait


class _Refusal(Exception):
    def __init__(self, status: int, message: str, reason: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.reason = reason
        self.headers = headers


def client_address(scope: Scope) -> str:
    client = scope.get("client")
    if isinstance(client, list | tuple) and client:
        return str(client[0])
    return "unknown"


class RequestGuard:
    def __init__(self, app: ASGIApp, opts: LimitOptions, on_refusal: Callable[[str], None] | None = None) -> None:
        self.app = app
        self.opts = opts
        self.rate = RateLimiter(opts.client_rate_per_s, opts.client_burst, opts.clients_tracked_max)
        self.on_refusal = on_refusal
        self.refused: dict[str, int] = {}

    def _count(self, reason: str) -> None:
        self.refused[reason] = self.refused.get(reason, 0) + 1
        if self.on_refusal is not None:
            self.on_refusal(reason)

    # ------------------------------------------------------------------ checks before the app

    def precheck(self, scope: Scope) -> tuple[bool, _Refusal | None]:
        """(may a body follow, the refusal if any) for an HTTP or WebSocket scope."""
        opts = self.opts
        raw_path = cast(bytes, scope.get("raw_path") or str(scope.get("path", "")).encode("utf-8", "surrogateescape"))
        target = len(raw_path) + len(cast(bytes, scope.get("query_string", b"")))
        headers = cast(list[tuple[bytes, bytes]], list(cast(Any, scope.get("headers", []))))
        lengths = [v for n, v in headers if n.lower() == b"content-length"]
        chunked = any(n.lower() == b"transfer-encoding" for n, _ in headers)
        body_may_follow = chunked or any(v.strip() not in (b"", b"0") for v in lengths)
        if target > opts.url_max_bytes:
            return body_may_follow, _Refusal(
                414, f"request URL is {target} bytes long; the limit is {opts.url_max_bytes} bytes", "url_too_long"
            )
        header_bytes = sum(len(n) + len(v) + 4 for n, v in headers)
        if header_bytes > opts.header_max_bytes:
            return body_may_follow, _Refusal(
                431,
                f"request headers are {header_bytes} bytes; the limit is {opts.header_max_bytes} bytes",
                "headers_too_large",
            )
        if lengths and chunked:
            return True, _Refusal(
                400, "a request may not carry both Content-Length and Transfer-Encoding", "conflicting_framing"
            )
        if len(lengths) > 1:
            return True, _Refusal(400, "a request may carry at most one Content-Length header", "conflicting_framing")
        if lengths and not lengths[0].strip().isdigit():
            return True, _Refusal(400, "Content-Length must be a non-negative integer", "bad_framing")
        wait = self.rate.take(client_address(scope), trio.current_time())
        if wait > 0:
            retry = str(max(1, math.ceil(wait))).encode()
            return body_may_follow, _Refusal(
                429,
                "too many requests from this client; retry later",
                "rate_limited",
                ((b"retry-after", retry),),
            )
        return body_may_follow, None

    # ------------------------------------------------------------------ ASGI

    async def __call__(self, scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] == "websocket":
            _, refusal = self.precheck(scope)
            if refusal is not None:
                self._count(refusal.reason)
                await send({"type": "websocket.close", "code": 1008, "reason": refusal.message[:120]})
                return
            await self.app(scope, receive, send)
            return
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        body_may_follow, refusal = self.precheck(scope)
        if refusal is not None:
            self._count(refusal.reason)
            await _answer(send, refusal, close=body_may_follow)
            return
        await _Exchange(self, scope, receive, send, body_may_follow).run()


async def _answer(send: ASGISendCallable, refusal: _Refusal, *, close: bool) -> None:
    body = json.dumps({"error": refusal.message, "outcome": "not_applied"}, separators=(",", ":")).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    headers.extend(refusal.headers)
    if close:
        headers.append((b"connection", b"close"))
    await send({"type": "http.response.start", "status": refusal.status, "headers": headers})
    await send({"type": "http.response.body", "body": body, "more_body": False})


class _Exchange:
    """One request through the guard: the body deadline and size, and early close."""

    def __init__(
        self,
        guard: RequestGuard,
        scope: Scope,
        receive: ASGIReceiveCallable,
        send: ASGISendCallable,
        body_may_follow: bool,
    ) -> None:
        self.guard = guard
        self.scope = scope
        self._receive = receive
        self._send = send
        self.body_done = not body_may_follow
        self.deadline = trio.current_time() + guard.opts.body_timeout_s + BACKSTOP_S
        self.started = False  # the app has sent http.response.start
        self.finished = False  # the response is complete
        self.taken_over = False  # the guard answered; the app's sends are dropped
        self.close_after = False  # the response says Connection: close
        self.scope_cancel: trio.CancelScope | None = None
        self.closing = trio.Event()  # the response says Connection: close
        self.body_bytes = 0  # of the request body, received so far

    async def run(self) -> None:
        async with trio.open_nursery() as nursery:
            self.scope_cancel = nursery.cancel_scope
            await self.guard.app(self.scope, self.receive, self.send)

    async def _take_over(self, refusal: _Refusal) -> None:
        """Answer instead of the app (if it has not started) and stop it."""
        self.guard._count(refusal.reason)
        if not self.started:
            self.taken_over = True
            with trio.CancelScope(shield=True):
                await _answer(self._send, refusal, close=True)
        if self.scope_cancel is not None:
            self.scope_cancel.cancel()

    async def receive(self) -> ASGIReceiveEvent:
        if self.body_done:
            return await self._receive()
        if self.closing.is_set():
            return {"type": "http.disconnect"}
        with trio.move_on_at(self.deadline):
            message: ASGIReceiveEvent | None = None
            async with trio.open_nursery() as race:

                async def inner() -> None:
                    nonlocal message
                    message = await self._receive()
                    race.cancel_scope.cancel()

                async def closing() -> None:
                    await self.closing.wait()
                    race.cancel_scope.cancel()

                race.start_soon(inner)
                race.start_soon(closing)
            if message is None:  # the answer says the connection closes: the body is not wanted
                return {"type": "http.disconnect"}
            limit = self.guard.opts.body_max_bytes
            if message["type"] == "http.request" and limit is not None:
                self.body_bytes += len(cast(Any, message).get("body", b""))
                if self.body_bytes > limit:
                    # A chunked body has no declared length: counted here as it arrives, so the
                    # application never waits for (or buffers) more than the limit.
                    await self._take_over(_Refusal(413, f"request body is larger than {limit} bytes", "body_too_large"))
                    return {"type": "http.disconnect"}
            if message["type"] == "http.request" and not message.get("more_body", False):
                self.body_done = True
            return message
        # Only the deadline gets here: nothing answered the slow body in time (the app's own
        # BODY_TIMEOUT normally does, a second earlier).
        await self._take_over(
            _Refusal(
                408,
                f"the request body did not arrive within {self.guard.opts.body_timeout_s:g} s",
                "body_timeout",
            )
        )
        return {"type": "http.disconnect"}

    async def send(self, message: ASGISendEvent) -> None:
        if self.taken_over:
            return
        if message["type"] == "http.response.start":
            self.started = True
            headers = cast(Any, message).get("headers", [])
            self.close_after = any(n.lower() == b"connection" and b"close" in v.lower() for n, v in headers)
        last = message["type"] == "http.response.body" and not cast(Any, message).get("more_body", False)
        if last and self.close_after:
            # The answer is complete and says the connection closes, so the app will not read the
            # rest of the body: a receive still waiting for it gets a disconnect. (Hypercorn
            # closes the socket only once the app has taken that disconnect; with Quart waiting
            # for a body nobody sends, the socket stayed open.)
            self.closing.set()
            with trio.CancelScope(shield=True):  # the disconnect may make the app cancel itself
                await self._send(message)
        else:
            await self._send(message)
        if last:
            self.finished = True
            if self.close_after and not self.body_done and self.scope_cancel is not None:
                # The answer is complete and says the connection closes: do not wait for a body
                # nobody will read (the app may be waiting for it); the server then closes.
                self.scope_cancel.cancel()
