"""One connection of the pipelined protocol (``beaver_vault.wire``, docs/protocol.md), for the
async client (anyio: Trio or asyncio), the sync client (a blocking socket) and a follower
forwarding to its leader (``api/pipelined.py``).

Theory of operation (async): many tasks share one connection. Each request gets an id and a
slot; frames queued while another task is writing go out together in one ``send`` (so N tasks
cost one system call, not N). (Yielding one scheduler round before a send, so that more frames
share it, was measured: fewer sends, but ~15 % fewer reads/s at 16 tasks; not done.) There is no background task (an ``AsyncClient`` has no nursery):
the first waiting task becomes the *reader*, reads frames and hands each answer to its slot;
when its own answer arrives it passes the reader's role to another waiting task. A broken
connection fails every waiting request with :class:`PipeBroken`, saying whether its frame may
have reached the server (``sent``): a frame handed to the socket may have been.

Watches stream: a request whose answer frames carry ``"more": true`` keeps its slot and
collects frames in order until a frame without ``more``.

The clients keep one such connection per endpoint: ``client/_pipe_pool.py``.
"""

from __future__ import annotations

import itertools
import json
import socket
import ssl
import threading
from collections import deque
from collections.abc import Mapping
from typing import Any

import anyio
import anyio.abc

from beaver_vault import wire
from beaver_vault.client._retry import API

HELLO_TIMEOUT_S = 5.0
STATUS_PATH = f"{API}/status"


class PipeBroken(Exception):
    """The connection failed. ``sent``: the request may have reached the server."""

    def __init__(self, message: str, *, sent: bool) -> None:
        super().__init__(message)
        self.sent = sent


class PipeRefused(Exception):
    """The server answered the hello with an error (no common version, refused credentials)."""


def split_address(address: str) -> tuple[str, int]:
    """``"host:port"`` / ``"[::1]:port"`` -> (host, port)."""
    host, _, port = address.rpartition(":")
    return host.strip("[]"), int(port)


def advertised(status_body: Any) -> str | None:
    """The ``pipelined_address`` a node's ``GET /api/v1/status`` advertises (None: none)."""
    if isinstance(status_body, dict):
        address = status_body.get("pipelined_address")
        if isinstance(address, str) and ":" in address:
            return address
    return None


def check_hello(header: Mapping[str, Any]) -> dict[str, Any]:
    if header.get("hello") != wire.HELLO or header.get("version") not in wire.VERSIONS:
        raise PipeRefused(f"the server refused the connection: {dict(header)}")
    return dict(header)


class _Slot:
    __slots__ = ("event", "frames", "done", "error")

    def __init__(self) -> None:
        # Made only when a task waits on the slot (most answers arrive before anyone waits, or
        # wake it once): an anyio.Event costs a backend lookup.
        self.event: anyio.Event | None = None
        self.frames: deque[tuple[dict[str, Any], bytes | None]] = deque()
        self.done = False
        self.error: PipeBroken | None = None

    def wake(self) -> None:
        event = self.event
        if event is not None:
            self.event = None
            event.set()

    async def wait(self) -> None:
        event = self.event
        if event is None:
            event = self.event = anyio.Event()
        await event.wait()


class AsyncPipe:
    """One pipelined connection, shared by any number of tasks (see the module docstring)."""

    def __init__(self, stream: anyio.abc.ByteStream, *, max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES) -> None:
        self._stream = stream
        self._reader = wire.FrameReader(max_frame_bytes)
        self._ids = itertools.count(1)
        self._slots: dict[int, _Slot] = {}
        self._out: list[bytes] = []
        self._flushing = False
        self._reading = False
        self.broken: str | None = None
        self.server: dict[str, Any] = {}
        self.send_timeout_s = 15.0

    @classmethod
    async def connect(
        cls,
        address: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = 1.0,
        client: str | None = None,
        auth: Any = None,
    ) -> AsyncPipe:
        host, port = split_address(address)
        with anyio.fail_after(connect_timeout_s):
            stream: anyio.abc.ByteStream = await anyio.connect_tcp(host, port)
            if ssl_context is not None:
                from anyio.streams.tls import TLSStream

                stream = await TLSStream.wrap(stream, hostname=host, ssl_context=ssl_context, standard_compatible=False)
        pipe = cls(stream)
        try:
            with anyio.fail_after(HELLO_TIMEOUT_S):
                await stream.send(wire.hello(client=client, auth=auth))
                while True:
                    frames = pipe._reader.frames()
                    if frames:
                        payload, _ = frames[0]
                        if payload is None:
                            raise PipeRefused("the server's hello is too large")
                        header, _body = wire.decode(payload)
                        pipe.server = check_hello(header)
                        break
                    pipe._reader.feed(await stream.receive())
        except BaseException:
            await anyio.aclose_forcefully(stream)
            raise
        return pipe

    async def aclose(self) -> None:
        self._fail("the connection was closed")
        await anyio.aclose_forcefully(self._stream)

    def in_flight(self) -> int:
        return len(self._slots)

    # ------------------------------------------------------------------ requests

    async def request(self, header: dict[str, Any], body: bytes | None = None) -> tuple[dict[str, Any], bytes | None]:
        """Send one request (``header`` gets its ``id``) and wait for its one answer."""
        rid, slot = await self._submit(header, body)
        try:
            return await self._next(rid, slot)
        finally:
            self._slots.pop(rid, None)

    async def open_stream(self, header: dict[str, Any], body: bytes | None = None) -> PipeStream:
        rid, slot = await self._submit(header, body)
        return PipeStream(self, rid, slot)

    async def _submit(self, header: dict[str, Any], body: bytes | None) -> tuple[int, _Slot]:
        if self.broken is not None:
            raise PipeBroken(self.broken, sent=False)
        rid = next(self._ids)
        header["id"] = rid
        slot = _Slot()
        self._slots[rid] = slot
        self._out.append(wire.encode(header, body))
        if not self._flushing:
            await self._flush()
        return rid, slot

    async def _flush(self) -> None:
        self._flushing = True
        try:
            while self._out and self.broken is None:
                data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
                self._out.clear()
                # Shielded: a caller cancelled half-way through would leave half a frame on the
                # wire and break every other request; bounded by a timeout instead (one scope
                # for both: the timeout is fail_after's, TimeoutError).
                with anyio.CancelScope(shield=True, deadline=anyio.current_time() + self.send_timeout_s) as scope:
                    await self._stream.send(data)
                if scope.cancelled_caught:
                    raise TimeoutError
        except BaseException as exc:  # a partial frame may be on the wire: the stream is out of step
            self._fail(f"sending failed: {type(exc).__name__}: {exc}")
            if isinstance(exc, Exception):
                return  # the waiting requests report it
            raise
        finally:
            self._flushing = False

    async def _next(self, rid: int, slot: _Slot) -> tuple[dict[str, Any], bytes | None]:
        while True:
            if slot.frames:
                return slot.frames.popleft()
            if slot.error is not None:
                raise slot.error
            if not self._reading:
                await self._read_until(slot)
            else:
                await slot.wait()

    async def _read_until(self, slot: _Slot) -> None:
        """Be the reader until ``slot`` has a frame (or the connection breaks)."""
        self._reading = True
        try:
            while not slot.frames and slot.error is None:
                try:
                    data = await self._stream.receive()
                except anyio.EndOfStream:
                    self._fail("the server closed the connection")
                    return
                except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError, ssl.SSLError) as exc:
                    self._fail(f"receiving failed: {type(exc).__name__}: {exc}")
                    return
                self._dispatch(data)
        finally:
            self._reading = False
            # Hand the reader's role to another waiting request: one that has waited (its event
            # exists); a request not waiting yet becomes the reader itself when it gets to wait.
            for other in self._slots.values():
                if other is not slot and other.event is not None and not other.frames and other.error is None:
                    other.wake()
                    break

    def _dispatch(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        for payload, _length in reader.frames():
            if payload is None:
                self._fail("the server sent a frame larger than the limit")
                return
            try:
                header, body = wire.decode(payload)
            except wire.FrameError as exc:
                self._fail(str(exc))
                return
            rid = header.get("id")
            slot = self._slots.get(rid) if isinstance(rid, int) else None
            if slot is None:
                continue  # an answer nobody waits for any more (cancelled), or an unattributable error
            slot.frames.append((header, body))
            slot.wake()

    def _fail(self, reason: str) -> None:
        if self.broken is None:
            self.broken = reason
        for slot in self._slots.values():
            if slot.error is None:
                slot.error = PipeBroken(reason, sent=True)
                slot.wake()


class PipeStream:
    """The answer frames of one streamed request (a watch)."""

    def __init__(self, pipe: AsyncPipe, rid: int, slot: _Slot) -> None:
        self.pipe = pipe
        self.rid = rid
        self.slot = slot
        self.ended = False

    async def next(self) -> tuple[dict[str, Any], bytes | None]:
        header, body = await self.pipe._next(self.rid, self.slot)
        if not header.get("more"):
            self.ended = True
            self.pipe._slots.pop(self.rid, None)
        return header, body

    async def cancel(self) -> None:
        if not self.ended and self.pipe.broken is None:
            self.pipe._slots.pop(self.rid, None)
            try:
                await self.pipe.request({"op": "cancel", "target": self.rid})
            except PipeBroken:
                pass
        self.ended = True


class SyncPipe:
    """The blocking twin for the sync client: one request at a time (a lock), one socket."""

    def __init__(self, sock: socket.socket, *, max_frame_bytes: int = wire.DEFAULT_MAX_FRAME_BYTES) -> None:
        self._sock = sock
        self._reader = wire.FrameReader(max_frame_bytes)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self.broken: str | None = None
        self.server: dict[str, Any] = {}

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        ssl_context: ssl.SSLContext | None = None,
        connect_timeout_s: float = 1.0,
        timeout_s: float = 15.0,
        client: str | None = None,
        auth: Any = None,
    ) -> SyncPipe:
        host, port = split_address(address)
        sock = socket.create_connection((host, port), timeout=connect_timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if ssl_context is not None:
                sock = ssl_context.wrap_socket(sock, server_hostname=host)
            sock.settimeout(timeout_s)
            pipe = cls(sock)
            sock.sendall(wire.hello(client=client, auth=auth))
            header, _ = pipe._read_frame()
            pipe.server = check_hello(header)
        except BaseException:
            sock.close()
            raise
        return pipe

    def close(self) -> None:
        self.broken = self.broken or "closed"
        self._sock.close()

    def _read_frame(self) -> tuple[dict[str, Any], bytes | None]:
        while True:
            frames = self._reader.frames()
            if frames:
                payload, _ = frames[0]
                if len(frames) > 1:
                    raise PipeBroken("the server sent more frames than asked for", sent=True)
                if payload is None:
                    raise PipeBroken("the server sent a frame larger than the limit", sent=True)
                return wire.decode(payload)
            data = self._sock.recv(65536)
            if not data:
                raise PipeBroken("the server closed the connection", sent=True)
            self._reader.feed(data)

    def busy(self) -> bool:
        return self._lock.locked()

    def request(self, header: dict[str, Any], body: bytes | None = None) -> tuple[dict[str, Any], bytes | None]:
        with self._lock:
            if self.broken is not None:
                raise PipeBroken(self.broken, sent=False)
            rid = next(self._ids)
            header["id"] = rid
            try:
                self._sock.sendall(wire.encode(header, body))
                while True:
                    answer, data = self._read_frame()
                    if answer.get("id") == rid:
                        return answer, data
            except PipeBroken as exc:
                self.broken = str(exc)
                self._sock.close()
                raise
            except (OSError, ValueError) as exc:  # socket.timeout is an OSError
                self.broken = f"{type(exc).__name__}: {exc}"
                self._sock.close()
                raise PipeBroken(self.broken, sent=True) from exc


def frame_header(op: str, key: str | None, params: tuple[tuple[str, str], ...], headers: Mapping[str, str]) -> dict[str, Any]:
    """A request frame's header from the parts of an HTTP-shaped call."""
    header: dict[str, Any] = {"op": op}
    if key is not None:
        header["key"] = key
    if params:
        header["q"] = dict(params)
    h = {k.lower(): v for k, v in headers.items() if k.lower() != "content-type"}
    if h:
        header["h"] = h
    return header


def answer_headers(header: Mapping[str, Any]) -> dict[str, str]:
    h = header.get("h")
    return {str(k): str(v) for k, v in h.items()} if isinstance(h, dict) else {}


def json_body(body: bytes | None) -> Any:
    return json.loads(body) if body else None
