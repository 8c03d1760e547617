"""A second wire for the harness's clients: the pipelined protocol (docs/protocol.md).

The harness uses only the public surface, so this is its own small implementation of the
documented frames (not the project's client): a blocking socket per node, the hello, one
request at a time. It takes the same HTTP-shaped requests the workload builds (method, path,
body, headers) and returns the same :class:`~jepsen_like.outcome.Exchange`, so the outcome
rules (``outcome.classify``) are the same for both wires: a connection refused before the
hello is ``connect_failed`` (certainly not sent); any failure after the frame may have left is
a transport error (``info``).

A node's client port is found through its ``GET /api/v1/status`` (``pipelined_address``); a
node that advertises none is talked to over HTTP. Connections are per node and reopened after
any failure (an answer that arrives after a timeout then cannot be mistaken for another's).
"""

from __future__ import annotations

import json
import socket
import struct
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import httpx

from jepsen_like.outcome import Exchange

_LEN = struct.Struct(">I")
KV_PREFIX = "/api/v1/kv/"
TXN_PATH = "/api/v1/txn"


def _frame(header: dict[str, Any], body: bytes | None) -> bytes:
    head = json.dumps(header, separators=(",", ":")).encode()
    payload = head if body is None else head + b"\n" + body
    return _LEN.pack(len(payload)) + payload


class Conn:
    def __init__(self, address: str, timeout_s: float) -> None:
        host, _, port = address.rpartition(":")
        self.sock = socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.next_id = 1
        self.sock.sendall(_frame({"hello": "beaver-vault", "versions": [1], "client": "jepsen-like"}, None))
        header, _ = self._read()
        if header.get("version") != 1:
            raise ConnectionError(f"hello refused: {header}")

    def _read(self) -> tuple[dict[str, Any], bytes]:
        while True:
            if len(self.buf) >= 4:
                (n,) = _LEN.unpack_from(self.buf)
                if len(self.buf) >= 4 + n:
                    payload, self.buf = self.buf[4 : 4 + n], self.buf[4 + n :]
                    head, _, body = payload.partition(b"\n")
                    return json.loads(head), body
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the node")
            self.buf += data

    def request(self, header: dict[str, Any], body: bytes | None) -> tuple[int, bytes]:
        rid = self.next_id
        self.next_id += 1
        self.sock.sendall(_frame({**header, "id": rid}, body))
        while True:
            answer, data = self._read()
            if answer.get("id") == rid:
                return int(answer["status"]), data

    def close(self) -> None:
        self.sock.close()


def to_frame(method: str, url: str, headers: dict[str, str]) -> dict[str, Any]:
    """The request frame of one of the workload's HTTP requests."""
    parts = urlsplit(url)
    q = dict(parse_qsl(parts.query))
    h = {k.lower(): v for k, v in headers.items() if k.lower() != "content-type"}
    header: dict[str, Any]
    if parts.path.startswith(KV_PREFIX):
        op = {"GET": "get", "PUT": "put", "DELETE": "delete"}[method]
        header = {"op": op, "key": unquote(parts.path[len(KV_PREFIX) :])}
    elif parts.path == TXN_PATH and method == "POST":
        header = {"op": "txn"}
    else:
        raise ValueError(f"no pipelined form for {method} {parts.path}")
    if q:
        header["q"] = q
    if h:
        header["h"] = h
    return header


class Pipelined:
    """One client's pipelined connections, one per node base URL."""

    def __init__(self, http: httpx.Client, timeout_s: float) -> None:
        self.http = http
        self.timeout_s = timeout_s
        self.addresses: dict[str, str | None] = {}
        self.conns: dict[str, Conn] = {}
        self.sent = 0  # requests that went over the pipelined protocol

    def address(self, base: str) -> str | None:
        if base not in self.addresses:
            try:
                doc = self.http.get(base + "/api/v1/status").json()
            except (httpx.HTTPError, ValueError):
                return None  # ask again next time
            address = doc.get("pipelined_address") if isinstance(doc, dict) else None
            self.addresses[base] = address if isinstance(address, str) else None
        return self.addresses[base]

    def exchange(self, base: str, method: str, url: str, body: Any, headers: dict[str, str]) -> Exchange | None:
        """One request over the pipelined protocol; None: this node has no client port (use HTTP)."""
        address = self.address(base)
        if address is None:
            return None
        conn = self.conns.get(base)
        if conn is None:
            try:
                conn = self.conns[base] = Conn(address, self.timeout_s)
            except (OSError, ConnectionError, ValueError) as e:
                self.addresses.pop(base, None)  # the node may have restarted on another port
                return Exchange(None, error=f"pipelined connect: {type(e).__name__}", connect_failed=True)
        data = None if body is None else json.dumps(body).encode()
        self.sent += 1
        try:
            status, answer = conn.request(to_frame(method, url, headers), data)
        except (OSError, ConnectionError, ValueError, KeyError) as e:
            conn.close()
            del self.conns[base]
            return Exchange(None, error=f"pipelined: {type(e).__name__}")
        return Exchange(status, answer.decode("utf-8", errors="replace"))

    def close(self) -> None:
        for conn in self.conns.values():
            conn.close()
        self.conns.clear()
