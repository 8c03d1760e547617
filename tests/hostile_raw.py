"""A raw HTTP/1.1 client for hostile-input tests: the request goes on the wire byte for byte.

HTTP client libraries repair what a hostile client would not (they normalise paths, re-encode
invalid percent escapes, refuse control characters and conflicting framing headers), so the
hostile suite writes its requests itself: :func:`request_bytes` builds one, :func:`exchange`
sends it on a fresh connection and reads one answer (``Content-Length``, chunked, or up to the
close), and says whether the server closed the connection afterwards.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Reply:
    status: int
    headers: tuple[tuple[str, str], ...]
    body: bytes
    closed: bool  # the server closed the connection after the answer

    def header(self, name: str) -> str | None:
        for n, v in self.headers:
            if n.lower() == name.lower():
                return v
        return None

    def json(self) -> Any:
        return json.loads(self.body)


class NoReply(AssertionError):
    """The server sent no (complete) answer."""


def request_bytes(
    method: str | bytes,
    target: str | bytes,
    *,
    host: str,
    headers: tuple[tuple[str, str | None], ...] | list[tuple[str, str]] = (),
    body: bytes | None = None,
    content_length: bool = True,
    close: bool = True,
) -> bytes:
    """One request. ``content_length``: add ``Content-Length`` for ``body`` (off when the case
    sets its own framing headers). ``close``: ask for ``Connection: close``."""
    m = method if isinstance(method, bytes) else method.encode("latin-1")
    t = target if isinstance(target, bytes) else target.encode("utf-8", "surrogateescape")
    lines = [m + b" " + t + b" HTTP/1.1", b"Host: " + host.encode()]
    for name, value in headers:
        if value is None:  # a header line without a colon
            lines.append(name.encode("latin-1"))
            continue
        lines.append(name.encode("latin-1") + b": " + value.encode("utf-8", "surrogateescape"))
    if body is not None and content_length:
        lines.append(b"Content-Length: " + str(len(body)).encode())
    if close:
        lines.append(b"Connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def _recv_until(sock: socket.socket, buf: bytearray, marker: bytes, deadline: float) -> bool:
    while marker not in buf:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk
    return True


def _recv_exact(sock: socket.socket, buf: bytearray, n: int, deadline: float) -> bool:
    while len(buf) < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        chunk = sock.recv(65536)
        if not chunk:
            return False
        buf += chunk
    return True


def _closed_after(sock: socket.socket, buf: bytearray, wait_s: float) -> bool:
    """True if the peer closes (EOF or reset) within ``wait_s`` with nothing more to say."""
    if buf:
        return False
    sock.settimeout(wait_s)
    try:
        return sock.recv(1) == b""
    except TimeoutError:
        return False
    except OSError:
        return True


def exchange(
    host: str,
    port: int,
    raw: bytes,
    *,
    timeout_s: float = 15.0,
    trickle: tuple[bytes, float] | None = None,
    close_wait_s: float = 2.0,
) -> Reply:
    """Send ``raw`` on a new connection and read one answer. ``trickle=(more, pause)``: after
    ``raw``, send ``more`` slowly (one byte every ``pause`` seconds) until the server answers."""
    deadline = time.monotonic() + timeout_s
    with socket.create_connection((host, port), timeout=timeout_s) as sock:
        try:
            sock.sendall(raw)
        except OSError:
            pass  # the server may answer (431, 413) and close before it has read everything
        buf = bytearray()
        if trickle is not None:
            more, pause = trickle
            sock.setblocking(False)
            for b in more:
                try:
                    chunk = sock.recv(65536)
                    if chunk:
                        buf += chunk
                        break
                    break
                except BlockingIOError:
                    pass
                try:
                    sock.send(bytes([b]))
                except OSError:
                    break
                time.sleep(pause)
                if time.monotonic() > deadline:
                    break
            sock.setblocking(True)
        try:
            if not _recv_until(sock, buf, b"\r\n\r\n", deadline):
                raise NoReply(f"connection closed before a complete answer ({bytes(buf[:200])!r})")
        except TimeoutError:
            raise NoReply(f"no answer within {timeout_s:g} s ({bytes(buf[:200])!r})") from None
        except ConnectionResetError:
            raise NoReply(f"connection reset before a complete answer ({bytes(buf[:200])!r})") from None
        head, _, rest = bytes(buf).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = tuple(
            (n.decode("latin-1").strip(), v.decode("latin-1").strip())
            for n, _, v in (line.partition(b":") for line in lines[1:])
        )
        hmap = {n.lower(): v for n, v in headers}
        body = bytearray(rest)
        if "content-length" in hmap:
            n = int(hmap["content-length"])
            if not _recv_exact(sock, body, n, deadline):
                raise NoReply("connection closed in the middle of the body")
            data, leftover = bytes(body[:n]), bytearray(body[n:])
        elif "chunked" in hmap.get("transfer-encoding", "").lower():
            data_parts: list[bytes] = []
            while True:
                if not _recv_until(sock, body, b"\r\n", deadline):
                    raise NoReply("connection closed in a chunked body")
                size_line, _, tail = bytes(body).partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                body = bytearray(tail)
                if not _recv_exact(sock, body, size + 2, deadline):
                    raise NoReply("connection closed in a chunk")
                data_parts.append(bytes(body[:size]))
                body = body[size + 2 :]
                if size == 0:
                    break
            data, leftover = b"".join(data_parts), body
        else:
            while True:
                sock.settimeout(max(0.01, deadline - time.monotonic()))
                chunk = sock.recv(65536)
                if not chunk:
                    break
                body += chunk
            return Reply(status, headers, bytes(body), True)
        closed = _closed_after(sock, leftover, close_wait_s) if close_wait_s > 0 else False
        return Reply(status, headers, data, closed)
