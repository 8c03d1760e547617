"""Watches: the ordered stream of applied changes under a prefix, over SSE and WebSocket.

Theory of operation: a watch is served by the node that receives it, from its own applied
state (``runtime.watch``), and is never forwarded: a follower streams what it applies. The
runtime's watcher has a bounded buffer; a client that reads too slowly is disconnected with a
reason and resumes from the last revision it saw.

Parameters (both transports): ``prefix`` (default: every key), ``from_revision=N`` (events
with revision >= N; default: changes after the watch starts) and a resume point
``Last-Event-ID`` (header, as EventSource sends it, or ``last_event_id`` query parameter),
which wins over ``from_revision``.

Resume points. One revision may carry several events (a prefix delete, a transaction), and
the runtime publishes them together, so each batch read from a watcher holds whole
revisions. The SSE ``id`` of the last event of a revision is ``R`` (everything up to R was
seen: resume at R+1); an earlier event of the same revision gets ``R:n`` (the first n events
of R were seen: resume at R and skip n). A reconnect thus has neither gap nor duplicate even
if the connection drops in the middle of a revision.

SSE (``GET /api/v1/watch``): each event is ``id: <resume point>`` + ``data: {"type", "key",
"value", "revision"}``; a ``: keep-alive`` comment every ``watch_keepalive_s``; when the
watcher is closed by the server, ``event: error`` with ``{"error": reason}``, then the stream
ends. Errors before the stream starts (bad input, 410 history gone, 503 too many watchers on
the node, 429 too many watchers from this client address) are ordinary JSON error responses.

Memory: a watcher's pending events are bounded in count and bytes (``watch_buffer_max``,
``watch_buffer_bytes_max``), and the SSE stream is written in pieces of at most
``SSE_PIECE_BYTES`` (one larger event alone), so a client that stops reading costs the node
at most one piece in flight, not its whole backlog serialised at once.

WebSocket (``/api/v1/watch/ws``): each message is one JSON event; errors are reported as a
last message ``{"error", "status", ...}`` followed by a close with a code and a reason (see
``errors.py``). Messages from the client are read and ignored.

A watcher closed by the server (it fell behind, the node's state was replaced by a snapshot)
first delivers the events it had buffered, then ends with ``{"error": reason,
"last_event_id": <resume point>}`` (SSE: an ``event: error``; WebSocket: the last message
before a 1013 close): reconnecting with that ``last_event_id`` continues exactly there.

With authentication on, a watch whose caller loses its access while it is open (user or token
deleted, password changed, token expired, read permission on the prefix revoked) ends with
``{"error", "status": 401|403, "last_event_id"}`` (SSE: an ``event: error``; WebSocket: the
last message before a 4401/4403 close), and nothing after the change that removed the access
is sent. The credentials are re-checked (``AccessGate``) as soon as an auth record is applied
on this node and at every keep-alive period (an expiry changes no record).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterator
from typing import Any

import trio
from quart import Response, request, websocket
from quart_trio import QuartTrio

from beaver_vault.api.auth_guard import AuthError, Recheck, recheck_of
from beaver_vault.api.context import API_PREFIX, ApiContext
from beaver_vault.api.errors import (
    WS_CLOSE_FELL_BEHIND,
    error_parts,
    json_error,
    websocket_close_code,
    websocket_reason,
)
from beaver_vault.api.limits import client_address
from beaver_vault.api.metrics import ApiMetrics
from beaver_vault.api.validation import BadInput, parse_optional_int, parse_resume_point
from beaver_vault.errors import BeaverVaultError
from beaver_vault.node.watch import Watcher, WatchHub

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
SSE_PIECE_BYTES = 64 * 1024


class ClientWatchers:
    """Open watches per client address, capped (a bounded table: one entry per address with an
    open watch)."""

    def __init__(self, per_client_max: int) -> None:
        self.per_client_max = per_client_max
        self.open: dict[str, int] = {}

    def acquire(self, client: str) -> bool:
        n = self.open.get(client, 0)
        if n >= self.per_client_max:
            return False
        self.open[client] = n + 1
        return True

    def release(self, client: str) -> None:
        n = self.open.get(client, 0) - 1
        if n > 0:
            self.open[client] = n
        else:
            self.open.pop(client, None)


class _BigEventCache:
    """The JSON of recent large events, shared by every watcher that sends them (a stalled
    client then pins one shared copy, not one of its own). Holds the event itself, so an
    ``id()`` cannot be reused while cached; a few entries only."""

    def __init__(self, entries_max: int = 8) -> None:
        self.entries_max = entries_max
        self._items: OrderedDict[int, tuple[dict[str, Any], bytes]] = OrderedDict()

    def encoded(self, ev: dict[str, Any]) -> bytes:
        hit = self._items.get(id(ev))
        if hit is not None and hit[0] is ev:
            return hit[1]
        data = event_json(ev).encode("utf-8")
        if len(data) > SSE_PIECE_BYTES:
            self._items[id(ev)] = (ev, data)
            while len(self._items) > self.entries_max:
                self._items.popitem(last=False)
        return data


_big_events = _BigEventCache()


def sse_pieces(labelled: list[tuple[str, dict[str, Any]]]) -> Iterator[bytes]:
    """SSE text for the events, in pieces of about ``SSE_PIECE_BYTES`` cut at event borders;
    a larger event goes alone, its JSON shared with the other watchers sending it."""
    current: list[bytes] = []
    size = 0
    for i, ev in labelled:
        data = _big_events.encoded(ev)
        if len(data) > SSE_PIECE_BYTES:
            if current:
                yield b"".join(current)
                current, size = [], 0
            yield f"id: {i}\ndata: ".encode()
            yield data
            yield b"\n\n"
            continue
        block = b"id: " + i.encode() + b"\ndata: " + data + b"\n\n"
        if current and size + len(block) > SSE_PIECE_BYTES:
            yield b"".join(current)
            current, size = [], 0
        current.append(block)
        size += len(block)
    if current:
        yield b"".join(current)


class Cursor:
    """Numbers the events of one stream with resume points and drops the ones a resumed client
    has already seen (``skip`` events of revision ``from_revision``)."""

    def __init__(self, from_revision: int | None, skip: int) -> None:
        self.revision = from_revision if skip else None
        self.seen_in_revision = skip
        self.skip = skip
        self.last_id: str | None = None  # resume point after the last event labelled

    def label(self, events: list[dict[str, Any]], *, complete: bool) -> list[tuple[str, dict[str, Any]]]:
        """``complete``: the batch ends on a revision boundary. The runtime publishes a revision's
        events together, so a batch is whole unless the watcher was closed while taking it (its
        buffer overflowed in the middle of a revision); then the last event gets ``R:n``."""
        out: list[tuple[str, dict[str, Any]]] = []
        for i, ev in enumerate(events):
            rev = ev["revision"]
            if self.skip and rev == self.revision:
                self.skip -= 1
                continue
            self.skip = 0
            if rev != self.revision:
                self.revision, self.seen_in_revision = rev, 0
            self.seen_in_revision += 1
            if i + 1 < len(events):
                whole = events[i + 1]["revision"] != rev
            else:
                whole = complete
            self.last_id = str(rev) if whole else f"{rev}:{self.seen_in_revision}"
            out.append((self.last_id, ev))
        return out


class AccessGate:
    """The access check of an open watch (authentication on: ``recheck`` is the guard's
    re-check of the credentials that opened it; off: None, and nothing is ever re-checked).
    ``refused`` re-checks when an auth record was applied since the last check (the hub's
    ``auth_generation`` moved) or when ``timer`` says a keep-alive period passed."""

    def __init__(self, recheck: Recheck | None, hub: WatchHub) -> None:
        self.recheck = recheck
        self.hub = hub
        self.seen = hub.auth_generation

    @property
    def auth_seen(self) -> int | None:
        """For ``next_events``: wake on an auth change only if there is something to re-check."""
        return self.seen if self.recheck is not None else None

    async def refused(self, *, timer: bool) -> AuthError | None:
        if self.recheck is None or (not timer and self.hub.auth_generation == self.seen):
            return None
        self.seen = self.hub.auth_generation  # a change during the check is checked next time
        return await self.recheck()


def refused_body(refusal: AuthError, cursor: Cursor) -> dict[str, Any]:
    return {"error": refusal.message, "status": refusal.status, "last_event_id": cursor.last_id}


def closed_body(watcher: Watcher, cursor: Cursor) -> dict[str, Any]:
    """Why the server ended the watch, and where to resume (``last_event_id``; null if no event
    was sent: resume from the same starting point)."""
    return {"error": watcher.closed_reason or "closed", "last_event_id": cursor.last_id}


def event_json(ev: dict[str, Any]) -> str:
    return json.dumps(
        {"type": ev["type"], "key": ev["key"], "value": ev.get("value"), "revision": ev["revision"]},
        ensure_ascii=False,
        separators=(",", ":"),
    )


def register(app: QuartTrio, ctx: ApiContext, metrics: ApiMetrics) -> None:
    runtime = ctx.runtime
    opts = ctx.opts
    per_client = ClientWatchers(opts.watchers_per_client_max)
    too_many = f"too many open watches from this client (the limit is {opts.watchers_per_client_max})"

    def watch_params(args: Any, last_event_id: str | None) -> tuple[str, int | None, int]:
        prefix = args.get("prefix", "")
        if len(prefix.encode("utf-8", errors="replace")) > opts.max_key_bytes:
            raise BadInput(f"prefix is longer than {opts.max_key_bytes} bytes")
        resume = last_event_id if last_event_id is not None else args.get("last_event_id")
        if resume is not None and resume.strip():
            resume_at, skip = parse_resume_point(resume)
            return prefix, resume_at, skip
        from_revision = parse_optional_int(args.get("from_revision"), "from_revision", lo=1, hi=2**63 - 1)
        return prefix, from_revision, 0

    async def next_batch(watcher: Watcher, gate: AccessGate) -> list[dict[str, Any]] | None:
        """The next events; [] once closed or after an auth change (``gate``); None when a
        keep-alive period passed without any."""
        with trio.move_on_after(opts.watch_keepalive_s):
            return await runtime.next_events(watcher, gate.auth_seen)
        return None

    # ------------------------------------------------------------------ Server-Sent Events

    @app.route(f"{API_PREFIX}/watch", methods=["GET"])
    async def watch_sse() -> Response:
        prefix, from_revision, skip = watch_params(request.args, request.headers.get("Last-Event-ID"))
        client = client_address(request.scope)
        if not per_client.acquire(client):
            return json_error(429, too_many, headers={"Retry-After": "1"})
        try:
            watcher = runtime.watch(
                prefix, from_revision, buffer_max=opts.watch_buffer_max, bytes_max=opts.watch_buffer_bytes_max
            )
        except BaseException:
            per_client.release(client)
            raise

        gate = AccessGate(recheck_of(request.scope), runtime.watch_hub)

        async def stream() -> AsyncIterator[bytes]:
            cursor = Cursor(from_revision, skip)
            metrics.watchers.labels("sse").inc()
            try:
                yield b": watching\n\n"
                while True:
                    events = await next_batch(watcher, gate)
                    refusal = await gate.refused(timer=events is None)
                    if refusal is not None:
                        yield f"event: error\ndata: {json.dumps(refused_body(refusal, cursor))}\n\n".encode()
                        return
                    if events is None:
                        yield b": keep-alive\n\n"
                        continue
                    if not events:
                        if watcher.closed_reason is None:
                            continue  # woken by an auth change that left this caller its access
                        yield f"event: error\ndata: {json.dumps(closed_body(watcher, cursor))}\n\n".encode()
                        return
                    labelled = cursor.label(events, complete=watcher.closed_reason is None)
                    del events
                    for piece in sse_pieces(labelled):
                        yield piece
            finally:
                watcher.close("the client went away")
                per_client.release(client)
                metrics.watchers.labels("sse").dec()

        response = Response(stream(), status=200, mimetype="text/event-stream", headers=dict(SSE_HEADERS))
        response.timeout = None  # a watch lasts as long as the client wants it
        return response

    # ------------------------------------------------------------------ WebSocket

    async def ws_fail(code: int, body: dict[str, Any]) -> None:
        """A last message with the whole story, then a close with a (truncated) reason."""
        await websocket.send(json.dumps(body, ensure_ascii=False))
        await websocket.close(code, websocket_reason(str(body["error"])))

    async def ignore_incoming() -> None:
        while True:
            await websocket.receive()

    @app.websocket(f"{API_PREFIX}/watch/ws")
    async def watch_ws() -> None:
        await websocket.accept()
        client = client_address(websocket.scope)
        if not per_client.acquire(client):
            await ws_fail(WS_CLOSE_FELL_BEHIND, {"error": too_many, "status": 429})
            return
        try:
            prefix, from_revision, skip = watch_params(websocket.args, websocket.headers.get("Last-Event-ID"))
            watcher = runtime.watch(
                prefix, from_revision, buffer_max=opts.watch_buffer_max, bytes_max=opts.watch_buffer_bytes_max
            )
        except BeaverVaultError as exc:
            per_client.release(client)
            status, body, _ = error_parts(exc)
            await ws_fail(websocket_close_code(status), {**body, "status": status})
            return
        except BaseException:
            per_client.release(client)
            raise
        cursor = Cursor(from_revision, skip)
        gate = AccessGate(recheck_of(websocket.scope), runtime.watch_hub)
        metrics.watchers.labels("websocket").inc()
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ignore_incoming)
                while True:
                    if gate.recheck is None:
                        events: list[dict[str, Any]] | None = await runtime.next_events(watcher)
                    else:
                        events = await next_batch(watcher, gate)
                    refusal = await gate.refused(timer=events is None)
                    if refusal is not None:
                        body = refused_body(refusal, cursor)
                        await ws_fail(websocket_close_code(refusal.status), body)
                        break
                    if events is None:
                        continue
                    if not events:
                        if watcher.closed_reason is None:
                            continue  # woken by an auth change that left this caller its access
                        await ws_fail(WS_CLOSE_FELL_BEHIND, closed_body(watcher, cursor))
                        break
                    for _, ev in cursor.label(events, complete=watcher.closed_reason is None):
                        await websocket.send(event_json(ev))
                nursery.cancel_scope.cancel()
        finally:
            watcher.close("the client went away")
            per_client.release(client)
            metrics.watchers.labels("websocket").dec()
