"""The pipelined client protocol's frames (version 1), shared by the server (``api/pipelined``)
and the client (``client/_pipelined``). Pure: bytes in, bytes out. See docs/protocol.md.

A frame is a 4-byte big-endian length ``L`` followed by ``L`` bytes: one JSON object (the
*header*, UTF-8, on one line: ``json.dumps`` never writes a raw newline), then optionally a
newline and the *body*, raw bytes that are exactly the body the HTTP API would carry (a JSON
value to write, a value read, an answer or an error document). Values thus cross the wire as
they are stored, never decoded and re-encoded on the way.

Why JSON and not msgpack: the standard library's ``json`` costs a few microseconds per small
header (measured: encode + decode of a request header ~3 us, see docs/protocol.md), well
under the per-operation cost of the rest of the path, needs no dependency on either side, and
the value itself is never re-encoded because it travels as the raw body.
"""

from __future__ import annotations

import json
import struct
from typing import Any

from beaver_vault.jsontext import compact_encoder

VERSION = 1
VERSIONS = (1,)
HELLO = "beaver-vault"
LENGTH = struct.Struct(">I")
LENGTH_BYTES = LENGTH.size
DEFAULT_MAX_FRAME_BYTES = 1024 * 1024 + 64 * 1024  # the HTTP body limit plus room for the header

_dumps = compact_encoder(allow_nan=True)
_loads = json.loads
_pack = LENGTH.pack


class FrameError(ValueError):
    """A frame that cannot be read (not JSON, not an object, ...). The stream stays in step."""


def json_bytes(value: Any) -> bytes:
    """``value`` as the frames' JSON (compact, UTF-8), e.g. to build a header by hand."""
    return _dumps(value).encode()


def encode(header: dict[str, Any], body: bytes | None = None) -> bytes:
    """One frame: length, header JSON, and ``\\n`` + body if there is a body."""
    head = _dumps(header).encode()
    if body is None:
        return _pack(len(head)) + head
    return b"".join((_pack(len(head) + 1 + len(body)), head, b"\n", body))


def decode(payload: bytes) -> tuple[dict[str, Any], bytes | None]:
    """Split a frame's payload (without its length) into its header and body."""
    cut = payload.find(b"\n")
    head = payload if cut < 0 else payload[:cut]
    try:
        header = _loads(head)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameError(f"frame header is not JSON: {exc}") from None
    if not isinstance(header, dict):
        raise FrameError("frame header must be a JSON object")
    return header, (None if cut < 0 else payload[cut + 1 :])


class FrameReader:
    """Cuts a byte stream into frames. ``feed`` bytes, then take ``frames()``. A frame longer
    than ``max_frame_bytes`` is skipped (its bytes are discarded as they arrive, never held)
    and reported once as ``(None, declared_length)``, so the stream stays in step."""

    def __init__(self, max_frame_bytes: int) -> None:
        self.max_frame_bytes = max_frame_bytes
        self._buf = bytearray()
        self._skip = 0  # bytes of an oversized frame still to discard

    def feed(self, data: bytes | bytearray) -> None:
        if self._skip:
            n = min(self._skip, len(data))
            self._skip -= n
            data = data[n:]
        self._buf += data

    def pending_bytes(self) -> int:
        return len(self._buf)

    def needed(self) -> int:
        """Bytes still missing to complete the frame under way (after ``frames()``): 0 when no
        frame has begun or its length is not known yet. Lets a reader size its next receive."""
        if self._skip:
            return self._skip
        buf = self._buf
        if len(buf) < LENGTH_BYTES:
            return 0
        length: int = LENGTH.unpack_from(buf, 0)[0]
        if length > self.max_frame_bytes:
            return 0
        return max(0, LENGTH_BYTES + length - len(buf))

    def frames(self) -> list[tuple[bytes | None, int]]:
        """Complete frames as ``(payload, length)``; ``(None, length)`` for an oversized one."""
        out: list[tuple[bytes | None, int]] = []
        buf = self._buf
        pos = 0
        end = len(buf)
        while not self._skip and end - pos >= LENGTH_BYTES:
            (length,) = LENGTH.unpack_from(buf, pos)
            if length > self.max_frame_bytes:
                out.append((None, length))
                pos += LENGTH_BYTES
                take = min(length, end - pos)
                pos += take
                self._skip = length - take
                continue
            if end - pos - LENGTH_BYTES < length:
                break
            start = pos + LENGTH_BYTES
            out.append((bytes(buf[start : start + length]), length))
            pos = start + length
        if pos:
            del buf[:pos]
        return out


def hello(versions: tuple[int, ...] = VERSIONS, *, client: str | None = None, auth: Any = None) -> bytes:
    """The client's first frame. ``auth`` carries credentials (``{"token": ...}``) once the
    server checks them; a server without authentication ignores it."""
    header: dict[str, Any] = {"hello": HELLO, "versions": list(versions)}
    if client is not None:
        header["client"] = client
    if auth is not None:
        header["auth"] = auth
    return encode(header)
