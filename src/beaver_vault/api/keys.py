"""Keys are exactly what the client sent: ONE decoding of the request path, everywhere.

Theory of operation: the key of ``/api/v1/kv/<key>`` is taken from the raw request target
(the ASGI scope's ``raw_path``, bytes as they came off the wire), never from the server's decoded
and possibly normalised path (Hypercorn decodes with ``errors="replace"``, so ``%FE`` and ``%FF``
would both become U+FFFD). The rule, used by the Quart routes, the ASGI fast path and the
forwarder alike:

1. the path starts with ``/api/v1/kv/`` spelled literally; the key is the rest of it;
2. each ``%XX`` (two hex digits, either case) is one byte; any other ``%`` is an error; every
   other byte stands for itself (``+`` is a plus, not a space);
3. the bytes are strict UTF-8 (no overlong forms, no encoded surrogates: a lone surrogate can
   never be part of a key);
4. no control characters (U+0000-U+001F, U+007F-U+009F);
5. nothing else is touched: ``.`` and ``..`` segments, ``//``, a trailing ``/``, ``%2F`` (a
   ``/`` in the key) and every Unicode form (no NFC/NFD normalisation) are kept as sent.

So ``a%2Fb`` and ``a/b`` are the same key (the same bytes once decoded), ``caf%C3%A9`` is
``café``, and ``%zz``, ``%FE``, ``%ED%A0%80``, ``%01`` are a 400 naming the reason.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from beaver_vault.api.validation import BadInput

KV_PATH = b"/api/v1/kv/"
_HEX = frozenset(b"0123456789abcdefABCDEF")


def percent_decode(raw: bytes) -> bytes:
    """Strict percent-decoding: ``%XX`` -> one byte; a ``%`` without two hex digits is an error."""
    if b"%" not in raw:
        return raw
    out = bytearray()
    i, n = 0, len(raw)
    while i < n:
        c = raw[i]
        if c == 0x25:  # %
            pair = raw[i + 1 : i + 3]
            if len(pair) != 2 or pair[0] not in _HEX or pair[1] not in _HEX:
                shown = raw[i : i + 3].decode("ascii", errors="replace")
                raise BadInput(f"invalid percent-encoding {shown!r} at byte {i} of the key")
            out.append(int(pair, 16))
            i += 3
        else:
            out.append(c)
            i += 1
    return bytes(out)


def decode_key_bytes(raw: bytes) -> str:
    """The key spelled by ``raw`` (the percent-encoded bytes after ``/api/v1/kv/``)."""
    data = percent_decode(raw)
    try:
        key = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"key is not valid UTF-8 (decoded byte offset {exc.start}: {exc.reason})") from None
    check_key_text(key)
    return key


def check_key_text(key: str) -> str:
    """No control characters and no lone surrogates (a key that did not come from UTF-8)."""
    for i, ch in enumerate(key):
        o = ord(ch)
        if o < 0x20 or 0x7F <= o <= 0x9F:
            raise BadInput(f"key contains the control character U+{o:04X} at position {i}")
        if 0xD800 <= o <= 0xDFFF:
            raise BadInput(f"key contains a lone surrogate U+{o:04X} at position {i}")
    return key


def key_from_path(raw_path: bytes) -> str:
    """The key of a ``/api/v1/kv/<key>`` request from its raw path (no query string)."""
    if not raw_path.startswith(KV_PATH):
        raise BadInput("the path must start with /api/v1/kv/ spelled literally (no percent-encoding before the key)")
    return decode_key_bytes(raw_path[len(KV_PATH) :])


def raw_path_of(scope: Mapping[str, Any]) -> bytes:
    """The request's raw path from the ASGI scope (without the query string). A server that
    does not give ``raw_path`` (some test clients): the decoded path, re-encoded as UTF-8."""
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw:
        return raw.partition(b"?")[0]
    path = scope.get("path", "")
    return quote(path, safe="/").encode("ascii") if isinstance(path, str) else b""


def scope_key(scope: Mapping[str, Any]) -> str:
    return key_from_path(raw_path_of(scope))


def quote_key(key: str) -> str:
    """The path spelling of ``key`` that every hop keeps byte for byte: percent-encode all but
    unreserved characters and ``/``, and spell ``.`` and ``..`` segments as ``%2E`` (HTTP
    clients and proxies remove dot segments; an escaped dot is left alone and decodes to the
    same key)."""
    quoted = quote(key, safe="/")
    parts = quoted.split("/")
    if any(p in (".", "..") for p in parts):
        quoted = "/".join(p.replace(".", "%2E") if p in (".", "..") else p for p in parts)
    return quoted


def exact_forward_path(raw_path: bytes) -> bytes:
    """The raw path to send on to the leader: the same bytes, except that ``.`` and ``..``
    segments are spelled ``%2E`` (which the leader decodes to the same key), because URL
    building in HTTP clients (httpx included) removes dot segments."""
    parts = raw_path.split(b"/")
    if not any(p in (b".", b"..") for p in parts):
        return raw_path
    return b"/".join(p.replace(b".", b"%2E") if p in (b".", b"..") else p for p in parts)
