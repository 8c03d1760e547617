"""The pipelined client protocol's server: framed TCP on the node's client port, many requests
in flight per connection, answers in any order (docs/protocol.md; frames: ``beaver_vault.wire``).

Theory of operation: one task reads a connection's frames. A put, get or delete that this node
serves itself is checked and started right there and answered from its waiter's completion,
with no task of its own (``_start``; a task per request, its cancel scopes and wake-ups were
most of the leader's event-loop time per request); a per-connection reaper abandons those that
reach ``request_timeout_s``. Every other request (and one this node must forward) runs in its
own task (``pipelined_ops.Ops``, the HTTP routes' logic). Answers are queued for the
connection's writer task, which sends everything queued meanwhile in one ``send_all`` (answers
completed in the same scheduler round share a system call). The same runtime serves it as the HTTP API, so
requests from both share one group commit and one ReadIndex round.

* Hello: a connection's first frame must be the client's hello (``versions``, optional
  ``client`` and ``auth``); the server answers with the version chosen and its limits. ``auth``
  is ignored while the node has no authentication; once ``api/auth_guard.py`` lands, the hello
  is the one place to check it (:meth:`PipelinedServer._check_auth`).
* Limits, as HTTP's: a frame larger than ``max_frame_bytes`` is skipped unread and answered by
  an error frame (413); at most ``max_in_flight`` requests per connection (429 beyond);
  at most ``connections_per_client`` connections per client address (refused with an error
  frame); a hello must arrive within ``hello_timeout_s``.
* Bad frames (not JSON, no id, an id in use, an unknown op, bad parameters) get an error frame
  (``id`` null when the frame has no usable id) and nothing else happens: the connection's
  other requests and the node go on.
* Errors are ``errors.error_parts`` (the one mapping): same status, body and ``outcome``.
* A follower forwards what only the leader can do (``NotLeader`` with a known leader) over one
  pipelined connection to the leader's client port (``LeaderLink``), shared by all its clients:
  frames forwarded in the same round go out in one send and come back multiplexed. A forwarded
  frame carries ``fwd`` (this node's id) and the deadline headers of ``deadline.py``; the leader
  never forwards it again. A forward that fails after its frame may have left is ``unknown``
  for a write, never a plain failure (``api/pipelined_forward.py``).
* TLS: when the node has TLS, the client port speaks TLS with the HTTP API's certificate.
"""

from __future__ import annotations

import logging
import ssl
from collections import deque
from dataclasses import dataclass
from typing import Any

import trio

from beaver_vault import wire
from beaver_vault.api.context import ApiContext
from beaver_vault.api.deadline import BUDGET_HEADER, SENT_AT_HEADER
from beaver_vault.api.errors import RETRY_AFTER_S, error_parts, json_text
from beaver_vault.api.metrics import ApiMetrics
from beaver_vault.api.pipelined_forward import LeaderLink
from beaver_vault.api.pipelined_ops import READ_OPS, WRITE_OPS, Ops, Request, Started
from beaver_vault.api.validation import BadInput, parse_optional_int, parse_resume_point
from beaver_vault.api.watch_routes import Cursor, closed_body
from beaver_vault.errors import BeaverVaultError, NotLeader

log = logging.getLogger("beaver_vault.api.pipelined")

_SENT_AT = SENT_AT_HEADER.lower()
_BUDGET = BUDGET_HEADER.lower()
WATCH_OUT_BYTES_MAX = 1024 * 1024  # a watch waits while this much is queued on its connection
# A receive asks for this much unless a large frame is under way (then up to ``receive_bytes``):
# ``recv(n)`` allocates n bytes first, and above ~128 KiB that allocation is an mmap/munmap pair,
# measured ~20 us per receive against ~3 us for 64 KiB, paid on every small request.
RECEIVE_BYTES_SMALL = 64 * 1024


@dataclass(frozen=True, slots=True)
class PipelinedOptions:
    max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES
    max_in_flight: int = 1024  # requests per connection
    connections_per_client: int = 64  # connections per client address
    hello_timeout_s: float = 5.0
    receive_bytes: int = 256 * 1024


def _error(rid: int | None, status: int, message: str, **extra: Any) -> bytes:
    body = {"error": message, "outcome": "not_applied", **extra}
    return wire.encode({"id": rid, "status": status}, json_text(body).encode())


def _answer(rid: int, status: int, headers: dict[str, str], body: bytes, *, more: bool = False) -> bytes:
    """``wire.encode({"id", "status", ["h"], ["more"]}, body)``, byte for byte, with only the
    headers going through the JSON encoder (the two integers are formatted directly)."""
    head = b'{"id":%d,"status":%d' % (rid, status)
    if headers:
        head += b',"h":' + wire.json_bytes(headers)
    head += b',"more":true}\n' if more else b"}\n"
    return b"".join((wire.LENGTH.pack(len(head) + len(body)), head, body))


def _refused(rid: int, exc: BeaverVaultError) -> bytes:
    """The answer to a request that raised ``exc`` (``errors.error_parts``: status, body, outcome)."""
    status, doc, raw = error_parts(exc)
    return _answer(rid, status, {k.lower(): v for k, v in raw.items()}, json_text(doc).encode())


def _internal_error(rid: int, op: object) -> bytes:
    outcome = "not_applied" if op in READ_OPS else "unknown"
    return _answer(rid, 500, {}, json_text({"error": "internal error", "outcome": outcome}).encode())


def _cancelled(rid: int, op: object) -> bytes:
    outcome = "unknown" if op in WRITE_OPS else "not_applied"
    return _answer(rid, 499, {}, json_text({"error": "cancelled", "outcome": outcome}).encode())


@dataclass(slots=True, eq=False)
class _Started:
    """A request answered from its waiter's completion, with no task (``Ops.start``)."""

    rid: int
    op: str
    started: Started | None  # None once answered (the deadline queue keeps only the shell)
    deadline: float  # trio time: abandoned then (outcome unknown for a write)
    cancelled: bool = False


def _queue_deadline(queue: deque[_Started], st: _Started, most: int) -> None:
    """Append ``st``. Answered requests wait in the queue behind an older pending one until it is
    due; past ``most`` entries only the pending ones (at most ``max_in_flight``) are kept, in
    order, so the queue is bounded by the in-flight limit, not by the request rate."""
    queue.append(st)
    if len(queue) > most:
        pending = [x for x in queue if x.started is not None]
        queue.clear()
        queue.extend(pending)


class _Conn:
    def __init__(self, stream: trio.abc.Stream, peer: str) -> None:
        self.stream = stream
        self.peer = peer
        self.active: dict[int, trio.CancelScope] = {}  # requests running in a task of their own
        self.started: dict[int, _Started] = {}  # requests waiting without a task
        self.deadlines: deque[_Started] = deque()  # the same, by deadline (all get the same timeout)
        self.has_started = trio.Event()
        self.closed = False
        self.out: list[bytes] = []
        self.out_bytes = 0
        self.has_out = trio.Event()
        self.drained = trio.Event()

    def send(self, frame: bytes) -> None:
        self.out.append(frame)
        self.out_bytes += len(frame)
        self.has_out.set()

    async def writer(self) -> None:
        while True:
            await self.has_out.wait()
            self.has_out = trio.Event()
            while self.out:
                data = self.out[0] if len(self.out) == 1 else b"".join(self.out)
                self.out.clear()
                self.out_bytes = 0
                await self.stream.send_all(data)
            self.drained.set()
            self.drained = trio.Event()

    def in_flight(self) -> int:
        return len(self.active) + len(self.started)

    async def room(self) -> None:
        """Wait while too much is queued (a watch must not outrun a slow reader)."""
        while self.out_bytes > WATCH_OUT_BYTES_MAX:
            await self.drained.wait()


class PipelinedServer:
    def __init__(
        self,
        ctx: ApiContext,
        options: PipelinedOptions | None = None,
        *,
        peer_ssl: ssl.SSLContext | None = None,
        metrics: ApiMetrics | None = None,
    ) -> None:
        self.ctx = ctx
        self.opts = options or PipelinedOptions()
        self.ops = Ops(ctx)
        self.link = LeaderLink(ctx.runtime.node_id, ctx.opts.forward_timeout_s, peer_ssl=peer_ssl)
        self.per_client: dict[str, int] = {}
        self.address: str | None = None
        self.counters: dict[str, int] = {"connections": 0, "requests": 0, "bad_frames": 0, "refused": 0}
        if metrics is not None:
            metrics.add_counters("pipelined", self.statistics)

    def statistics(self) -> dict[str, int]:
        """For /metrics (``beaver_vault_pipelined_*``): connections and requests served, bad
        frames and refused connections, requests forwarded to the leader and failed forwards."""
        return {
            **self.counters,
            "open_connections": sum(self.per_client.values()),
            "forwarded": self.link.forwarded,
            "forward_failed": self.link.failed,
        }

    async def serve(
        self,
        host: str,
        port: int,
        *,
        advertise_host: str,
        ssl_context: ssl.SSLContext | None = None,
        task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Listen on ``host:port`` (0: any free port), advertise ``advertise_host:<port>``."""
        tcp = await trio.open_tcp_listeners(port, host=host)
        bound = tcp[0].socket.getsockname()[1]
        listeners: list[Any] = list(tcp)
        if ssl_context is not None:
            listeners = [trio.SSLListener(lst, ssl_context, https_compatible=False) for lst in tcp]
        shown = f"[{advertise_host}]" if ":" in advertise_host else advertise_host
        self.address = f"{shown}:{bound}"
        self.ctx.pipelined_address = self.address
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(trio.serve_listeners, self._connection, listeners)
                task_status.started(self.address)
        finally:
            self.ctx.pipelined_address = None
            await self.link.aclose()

    # ------------------------------------------------------------------ connections

    @staticmethod
    def _peer(stream: trio.abc.Stream) -> str:
        inner: Any = stream
        while isinstance(inner, trio.SSLStream):
            inner = inner.transport_stream
        try:
            return str(inner.socket.getpeername()[0])
        except (AttributeError, OSError):
            return "unknown"

    async def _connection(self, stream: trio.abc.Stream) -> None:
        peer = self._peer(stream)
        n = self.per_client.get(peer, 0)
        try:
            if n >= self.opts.connections_per_client:
                self.counters["refused"] += 1
                message = f"too many connections from this client (the limit is {self.opts.connections_per_client})"
                with trio.move_on_after(1):
                    await stream.send_all(_error(None, 429, message))
                return
            self.per_client[peer] = n + 1
            self.counters["connections"] += 1
            try:
                await self._serve_connection(_Conn(stream, peer))
            finally:
                left = self.per_client.get(peer, 1) - 1
                if left > 0:
                    self.per_client[peer] = left
                else:
                    self.per_client.pop(peer, None)
        except (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError):
            pass  # the client went away (or failed its TLS handshake): nothing to answer
        except Exception as exc:  # noqa: BLE001 - one connection's failure is never the node's
            # (e.g. the same errors grouped by the connection's nursery, or a bug: logged)
            if not _only_io_errors(exc):
                log.exception("pipelined connection from %s failed", peer)
        finally:
            with trio.move_on_after(1) as cleanup:
                cleanup.shield = True
                await trio.aclose_forcefully(stream)

    async def _serve_connection(self, conn: _Conn) -> None:
        reader = wire.FrameReader(self.opts.max_frame_bytes)
        behind = await self._hello(conn, reader)
        if behind is None:
            return
        async with trio.open_nursery() as nursery:
            nursery.start_soon(conn.writer)
            nursery.start_soon(self._reaper, conn)
            try:
                for payload, length in behind:  # frames sent right behind the hello
                    self._frame(conn, nursery, payload, length)
                most = self.opts.receive_bytes
                small = min(most, RECEIVE_BYTES_SMALL)
                while True:
                    needed = reader.needed()
                    data = await conn.stream.receive_some(small if needed <= small else min(most, needed))
                    if not data:
                        break
                    reader.feed(data)
                    for payload, length in reader.frames():
                        self._frame(conn, nursery, payload, length)
            finally:
                nursery.cancel_scope.cancel()  # the client left: its requests have no one to answer
                conn.closed = True
                for st in list(conn.started.values()):
                    if st.started is not None and st.started.waiter is not None:
                        self.ctx.runtime.abandon(st.started.waiter, "the client's connection closed")

    async def _hello(self, conn: _Conn, reader: wire.FrameReader) -> list[tuple[bytes | None, int]] | None:
        """Read and answer the hello; the frames that came right behind it, or None (refused)."""
        with trio.move_on_after(self.opts.hello_timeout_s):
            while True:
                frames = reader.frames()
                if frames:
                    break
                data = await conn.stream.receive_some(self.opts.receive_bytes)
                if not data:
                    return None
                reader.feed(data)
            payload, length = frames[0]
            if payload is None:
                await conn.stream.send_all(_error(None, 413, f"the hello frame is larger than {self.opts.max_frame_bytes} bytes"))
                return None
            try:
                header, _ = wire.decode(payload)
            except wire.FrameError as exc:
                await conn.stream.send_all(_error(None, 400, f"bad hello: {exc}"))
                return None
            versions = header.get("versions")
            if header.get("hello") != wire.HELLO or not isinstance(versions, list):
                await conn.stream.send_all(
                    _error(None, 400, 'the first frame must be a hello: {"hello": "beaver-vault", "versions": [1]}')
                )
                return None
            common = sorted(set(v for v in versions if isinstance(v, int)) & set(wire.VERSIONS))
            if not common:
                await conn.stream.send_all(
                    _error(None, 400, "no common protocol version", versions=list(wire.VERSIONS))
                )
                return None
            refusal = self._check_auth(header.get("auth"))
            if refusal is not None:
                await conn.stream.send_all(_error(None, 401, refusal))
                return None
            answer = {
                "hello": wire.HELLO,
                "version": common[-1],
                "node_id": self.ctx.runtime.node_id,
                "max_frame_bytes": self.opts.max_frame_bytes,
                "max_in_flight": self.opts.max_in_flight,
                "auth": "off",
            }
            await conn.stream.send_all(wire.encode(answer))
            return frames[1:] + reader.frames()
        with trio.move_on_after(1):
            await conn.stream.send_all(_error(None, 408, "no hello within the time allowed"))
        return None

    def _check_auth(self, auth: Any) -> str | None:
        """The hello's credentials. No authentication yet: accepted and ignored. The place where
        ``api/auth_guard.py`` will check them (a refusal text here closes the connection with 401)."""
        return None

    def _frame(self, conn: _Conn, nursery: trio.Nursery, payload: bytes | None, length: int) -> None:
        if payload is None:
            self.counters["bad_frames"] += 1
            conn.send(_error(None, 413, f"frame of {length} bytes is larger than {self.opts.max_frame_bytes} bytes"))
            return
        try:
            header, body = wire.decode(payload)
        except wire.FrameError as exc:
            self.counters["bad_frames"] += 1
            conn.send(_error(None, 400, str(exc)))
            return
        rid = header.get("id")
        if not isinstance(rid, int) or isinstance(rid, bool) or not 0 <= rid < 2**63:
            self.counters["bad_frames"] += 1
            conn.send(_error(None, 400, "a request frame needs an id (a non-negative integer)"))
            return
        if rid in conn.active or rid in conn.started:
            self.counters["bad_frames"] += 1
            conn.send(_error(rid, 400, f"request id {rid} is already in flight on this connection"))
            return
        if header.get("op") == "cancel":
            target = header.get("target")
            scope = conn.active.get(target) if isinstance(target, int) else None
            started = conn.started.get(target) if isinstance(target, int) else None
            if scope is not None:
                scope.cancel()
            elif started is not None and started.started is not None:  # (always, while listed)
                started.cancelled = True
                waiter = started.started.waiter
                if waiter is not None:  # (one with nothing to wait for was answered at once)
                    self.ctx.runtime.abandon(waiter, "cancelled by the client")  # answers it (499)
            conn.send(_answer(rid, 200, {}, json_text({"cancelled": scope is not None or started is not None}).encode()))
            return
        if conn.in_flight() >= self.opts.max_in_flight:
            conn.send(
                _error(rid, 429, f"too many requests in flight on this connection (the limit is {self.opts.max_in_flight})")
            )
            return
        self.counters["requests"] += 1
        if header.get("op") in Ops.START_OPS and "fwd" not in header and self._start(conn, rid, header, body):
            return
        scope = trio.CancelScope()
        conn.active[rid] = scope
        nursery.start_soon(self._request, conn, rid, scope, header, body)

    # ------------------------------------------------------------------ one request, no task

    def _start(self, conn: _Conn, rid: int, header: dict[str, Any], body: bytes | None) -> bool:
        """Start a put, get or delete with no task of its own (a task, its cancel scopes and its
        wake-ups are most of the event loop's time per request): checked and proposed (or its
        read barrier started) here, answered from its waiter's completion (``_started_done``),
        abandoned by the connection's ``_reaper`` after ``request_timeout_s``, by a cancel, or
        when the connection closes, as the task's wait is. False: run it in a task after all
        (this node is not the leader: the task forwards it)."""
        op = str(header.get("op"))
        try:
            started = self.ops.start(Request(header, body))
        except NotLeader:
            return False
        except BeaverVaultError as exc:
            conn.send(_refused(rid, exc))
            return True
        except Exception:
            log.exception("pipelined request %s failed", op)
            conn.send(_internal_error(rid, op))
            return True
        st = _Started(rid, op, started, trio.current_time() + self.ctx.opts.request_timeout_s)
        waiter = started.waiter
        if waiter is None or waiter.done:
            self._started_done(conn, st)
            return True
        conn.started[rid] = st
        _queue_deadline(conn.deadlines, st, 2 * self.opts.max_in_flight)
        conn.has_started.set()
        waiter.on_done = lambda: self._started_done(conn, st)
        return True

    def _started_done(self, conn: _Conn, st: _Started) -> None:
        """The waiter of ``st`` is done (called from the runtime, inside its processing: sends
        the answer and nothing else)."""
        conn.started.pop(st.rid, None)
        started, op = st.started, st.op
        st.started = None
        if conn.closed or started is None:
            return
        waiter = started.waiter
        if st.cancelled:
            conn.send(_cancelled(st.rid, op))
            return
        try:
            if waiter is not None and waiter.error is not None:
                raise waiter.error
            status, headers, out = started.finish(None if waiter is None else waiter.result)
        except BeaverVaultError as exc:
            conn.send(_refused(st.rid, exc))
            return
        except Exception:
            log.exception("pipelined request %s failed", op)
            conn.send(_internal_error(st.rid, op))
            return
        if waiter is not None and started.what == "write":
            self.ctx.runtime.answered(waiter)
        conn.send(_answer(st.rid, status, headers, out))

    async def _reaper(self, conn: _Conn) -> None:
        """Abandon the connection's task-less requests whose time is up (the answer, 504 with
        outcome unknown for a write, comes through ``_started_done``). They all have the same
        timeout, so ``deadlines`` is in deadline order."""
        runtime = self.ctx.runtime
        queue = conn.deadlines
        while True:
            while queue and queue[0].started is None:
                queue.popleft()  # answered already
            if not queue:
                await conn.has_started.wait()
                conn.has_started = trio.Event()
                continue
            st = queue[0]
            await trio.sleep_until(st.deadline)
            if queue and queue[0] is st:  # (``_start`` may have compacted the queue meanwhile)
                queue.popleft()
            started = st.started
            if started is not None and started.waiter is not None:
                timeout = self.ctx.opts.request_timeout_s
                runtime.abandon(started.waiter, f"{started.what} timed out after {timeout:g}s")  # answers it

    # ------------------------------------------------------------------ one request

    async def _request(
        self, conn: _Conn, rid: int, scope: trio.CancelScope, header: dict[str, Any], body: bytes | None
    ) -> None:
        op = header.get("op")
        try:
            with scope:
                try:
                    req = Request(header, body)
                    if req.op == "watch":
                        await self._watch(conn, rid, req)
                        return
                    deadline = None
                    if req.fwd is not None and req.op in WRITE_OPS:
                        deadline = self.ctx.deadlines.deadline(req.fwd, req.h.get(_SENT_AT), req.h.get(_BUDGET))
                    status, headers, out = await self.ops.run(req, deadline)
                except NotLeader as exc:
                    status, headers, out = await self._not_leader(exc, header, body)
                except BeaverVaultError as exc:
                    conn.send(_refused(rid, exc))
                    return
                except Exception:
                    log.exception("pipelined request %s failed", op)
                    conn.send(_internal_error(rid, op))
                    return
                conn.send(_answer(rid, status, headers, out))
            if scope.cancelled_caught:  # the client cancelled it (op cancel)
                if op == "watch":
                    conn.send(_answer(rid, 200, {}, json_text({"cancelled": True}).encode()))
                else:
                    conn.send(_cancelled(rid, op))
        finally:
            conn.active.pop(rid, None)

    async def _not_leader(self, exc: NotLeader, header: dict[str, Any], body: bytes | None) -> tuple[int, dict[str, str], bytes]:
        if isinstance(header.get("fwd"), str):
            doc = {"error": "leader changed, retry", "outcome": "not_applied", "leader_id": exc.leader_id}
            return 503, {"retry-after": RETRY_AFTER_S}, json_text(doc).encode()
        if not exc.leader_http:
            status, doc, raw = error_parts(exc)
            return status, {k.lower(): v for k, v in raw.items()}, json_text(doc).encode()
        return await self.link.forward(exc.leader_http, exc.leader_id, header, body)

    async def _watch(self, conn: _Conn, rid: int, req: Request) -> None:
        """A stream of frames: a first one (``[]``) once the watch is registered, then one per
        batch of events (a JSON array of ``{"id": resume point, "type", "key", "value",
        "revision"}``), all with ``more``; a last one without ``more`` when the server ends it
        (``{"error": reason, "last_event_id"}``) or the client cancels it."""
        opts = self.ctx.opts
        q = req.q
        prefix = q.get("prefix", "")
        if len(prefix.encode("utf-8", errors="replace")) > opts.max_key_bytes:
            raise BadInput(f"prefix is longer than {opts.max_key_bytes} bytes")
        resume = q.get("last_event_id")
        from_revision: int | None
        if resume is not None and resume.strip():
            from_revision, skip = parse_resume_point(resume)
        else:
            from_revision = parse_optional_int(q.get("from_revision"), "from_revision", lo=1, hi=2**63 - 1)
            skip = 0
        runtime = self.ctx.runtime
        watcher = runtime.watch(prefix, from_revision, buffer_max=opts.watch_buffer_max, bytes_max=opts.watch_buffer_bytes_max)
        cursor = Cursor(from_revision, skip)
        try:
            conn.send(_answer(rid, 200, {}, b"[]", more=True))
            while True:
                events = await runtime.next_events(watcher)
                if not events:
                    conn.send(_answer(rid, 200, {}, json_text(closed_body(watcher, cursor)).encode()))
                    return
                labelled = cursor.label(events, complete=watcher.closed_reason is None or bool(watcher.buffer))
                items = [
                    {"id": label, "type": ev["type"], "key": ev["key"], "value": ev.get("value"), "revision": ev["revision"]}
                    for label, ev in labelled
                ]
                if items:
                    conn.send(_answer(rid, 200, {}, json_text(items).encode(), more=True))
                    await conn.room()
        finally:
            watcher.close()


_IO_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError, OSError)


def _only_io_errors(exc: BaseException) -> bool:
    """Is ``exc`` (or every exception of its group) a lost connection?"""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_io_errors(e) for e in exc.exceptions)
    return isinstance(exc, _IO_ERRORS)
