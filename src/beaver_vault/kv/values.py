"""Validation helpers shared by every command encoder and decoder (pure, standard library only).

Everything here is deterministic: the same input gives the same answer (or the same
``CommandError`` message) on every node, whatever its stack depth or clock. Integers that
reach storage are bounded to SQLite's signed 64-bit range, so a committed command can never
make a store raise ``OverflowError`` while it is applied.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from beaver_vault.jsontext import compact_encoder, encode_string

MAX_DEPTH = 256  # nesting of a value; the API's own limit must not exceed it
MAX_KEY_BYTES = 64 * 1024  # a safety net; the API enforces its (smaller, configurable) limit
MAX_INT = 2**63 - 1  # revisions, times and expiries are stored as SQLite INTEGERs
MAX_REQUEST_FIELD_BYTES = 256  # client id and request id of an idempotent write
MAX_TTL_MS = 366 * 24 * 3600 * 1000


class CommandError(ValueError):
    """A command that cannot be encoded or decoded. Deterministic: same bytes, same message."""


_CANONICAL = compact_encoder(allow_nan=False)


def canonical_json(value: Any) -> str:
    """The one text form of a JSON document: compact, UTF-8 (not \\u-escaped), object key order kept.

    Raises ``ValueError`` for NaN/Infinity and ``TypeError`` for non-JSON values."""
    return _CANONICAL(value)


def json_str(text: str) -> str:
    """A string as a JSON literal, not \\u-escaped (keys, ids, prefixes)."""
    if type(text) is str:
        return encode_string(text)
    return json.dumps(text, ensure_ascii=False)


_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def too_deep(data: bytes, limit: int) -> bool:
    """Whether ``data`` (JSON text) nests deeper than ``limit``, found without recursing
    (brackets inside strings do not count)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return False  # cannot be deeper than the number of openers
    depth = 0
    for m in _TOKENS.finditer(data):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        elif tok in (b"]", b"}"):
            depth -= 1
    return False


def check_text(text: object, what: str, *, max_bytes: int, allow_empty: bool = False) -> str:
    if not isinstance(text, str):
        raise CommandError(f"{what} must be a string")
    if not text and not allow_empty:
        raise CommandError(f"{what} must not be empty")
    try:
        n = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise CommandError(f"{what} is not valid Unicode (lone surrogate)") from None
    if n > max_bytes:
        raise CommandError(f"{what} longer than {max_bytes} bytes")
    return text


def check_key(key: object, what: str = "key") -> str:
    return check_text(key, what, max_bytes=MAX_KEY_BYTES)


def check_int(value: object, what: str) -> int:
    """A non-negative integer that fits a SQLite INTEGER (``true`` is not an integer)."""
    if type(value) is not int:
        raise CommandError(f"{what} must be an integer")
    if not 0 <= value <= MAX_INT:
        raise CommandError(f"{what} must be between 0 and {MAX_INT}")
    return value


def value_json(value: Any, what: str) -> str:
    """Validate a document and return its canonical text."""
    try:
        text = canonical_json(value)
        raw = text.encode("utf-8")  # lone surrogates cannot be stored or sent
    except RecursionError:
        raise CommandError(f"{what} is nested too deeply") from None
    except UnicodeEncodeError:
        raise CommandError(f"{what} contains a lone surrogate") from None
    except (ValueError, TypeError) as e:
        raise CommandError(f"{what} is not a JSON document: {e}") from None
    if too_deep(raw, MAX_DEPTH):
        raise CommandError(f"{what} is nested more than {MAX_DEPTH} levels deep")
    return text


# --------------------------------------------------------------------------- idempotent requests


@dataclass(frozen=True, slots=True)
class Request:
    """Identity of a client write for exactly-once application: ``client`` and ``id`` come from
    the HTTP ``Idempotency-Key``; ``now_ms`` is the LEADER's clock when it proposed the write
    (the only time the state machine ever sees, so expiry is the same on every node)."""

    client: str
    id: str
    now_ms: int

    def __post_init__(self) -> None:
        check_text(self.client, "request client", max_bytes=MAX_REQUEST_FIELD_BYTES)
        check_text(self.id, "request id", max_bytes=MAX_REQUEST_FIELD_BYTES)
        check_int(self.now_ms, "request now_ms")

    def to_json(self) -> str:
        return f'{{"client":{json_str(self.client)},"id":{json_str(self.id)},"now_ms":{self.now_ms}}}'


RequestLike = Request | Mapping[str, Any] | None


def as_request(request: object) -> Request | None:
    """Accept a ``Request``, a mapping with exactly ``client``, ``id``, ``now_ms``, or ``None``."""
    if request is None or isinstance(request, Request):
        return request
    if not isinstance(request, Mapping):
        raise CommandError("request must be an object with client, id and now_ms")
    if set(request) != {"client", "id", "now_ms"}:
        raise CommandError(f"request must have exactly client, id and now_ms; got {sorted(map(str, request))!r}"[:200])
    return Request(request["client"], request["id"], request["now_ms"])


# --------------------------------------------------------------------------- TTLs

_DURATION = re.compile(r"(\d{1,15}(?:\.\d{1,9})?)(ms|s|m|h|d)?")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_ttl_ms(ttl: object) -> int:
    """A time-to-live as whole milliseconds (rounded up, at least 1, at most ``MAX_TTL_MS``).

    Accepts a number of seconds (``30``, ``0.5``) or a duration string: digits with an optional
    fraction and an optional unit ``ms``, ``s`` (default), ``m``, ``h`` or ``d`` (``"30s"``,
    ``"1.5m"``, ``"250ms"``). Pure: the caller adds it to the leader's clock reading."""
    if isinstance(ttl, bool):
        raise CommandError("ttl must be a number of seconds or a duration like '30s'")
    if isinstance(ttl, int | float):
        if ttl != ttl or ttl in (float("inf"), float("-inf")):
            raise CommandError("ttl must be finite")
        amount = Fraction(ttl) * 1000
    elif isinstance(ttl, str):
        m = _DURATION.fullmatch(ttl.strip())
        if m is None:
            raise CommandError(f"ttl {ttl!r} is not a duration like '30s', '500ms', '2m', '1h'"[:200])
        amount = Fraction(m.group(1)) * _UNIT_MS[m.group(2) or "s"]
    else:
        raise CommandError("ttl must be a number of seconds or a duration like '30s'")
    if amount <= 0:
        raise CommandError("ttl must be positive")
    ms = -(-amount.numerator // amount.denominator)  # ceiling
    if ms > MAX_TTL_MS:
        raise CommandError(f"ttl longer than {MAX_TTL_MS // 86_400_000} days")
    return ms
