"""Input validation for the HTTP API: keys and JSON bodies.

Theory of operation: every request body and key is checked here, *before* anything is
proposed to Raft, so bad input is answered with a 4xx and never appends to the log.
Failures raise :class:`BadInput` (a :class:`beaver_vault.errors.Rejected`, so it is
mapped to HTTP by ``api/errors.py`` like every other domain error, outcome
``not_applied``).

A body is accepted when it is, in this order:

1. non-empty and at most ``max_body_bytes`` (the transport-level bound is enforced by
   Quart's ``MAX_CONTENT_LENGTH`` as well; this is a second, cheap check);
2. valid UTF-8 (strict: no BOM games, no surrogate escapes);
3. one JSON document (``json.loads``) without ``NaN``/``Infinity``/``-Infinity``,
   without numbers that overflow to infinity (``1e400``) and without integers beyond
   Python's digit limit;
4. nested at most ``max_json_depth`` arrays/objects deep (the C parser's own recursion
   guard turns pathological nesting into ``RecursionError``, also rejected);
5. free of lone surrogates such as ``"\\ud800"`` (legal JSON escapes that are not text):
   re-encoding the canonical form as UTF-8 fails on them.

The canonical text (compact separators, non-ASCII kept) is what the key-value state
machine stores, so the API returns it alongside the parsed value.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

from beaver_vault.errors import Rejected


class BadInput(Rejected):
    """Client input refused before it reached the log (always ``not_applied``)."""

    def __init__(self, detail: str, status: int = 400) -> None:
        super().__init__(detail, status)


@dataclass(frozen=True, slots=True)
class JsonDocument:
    value: Any
    canonical: str  # compact JSON text of ``value``


def _reject_constant(name: str) -> Any:
    raise BadInput(f"{name} is not valid JSON (only finite numbers are allowed)")


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise BadInput(f"number {text[:40]!s} is out of range")
    return value


def json_depth_exceeds(value: Any, max_depth: int) -> bool:
    """True when ``value`` nests arrays/objects more than ``max_depth`` levels deep.

    Iterative (an explicit stack), so it cannot itself hit the recursion limit; it stops
    as soon as the limit is crossed. A scalar has depth 0, ``[]`` depth 1.
    """
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children: Any = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        depth += 1
        if depth > max_depth:
            return True
        stack.extend((child, depth) for child in children if isinstance(child, (dict, list)))
    return False


def parse_json_body(raw: bytes, *, max_body_bytes: int, max_json_depth: int) -> JsonDocument:
    """Parse and check one JSON document; raise :class:`BadInput` when it is unacceptable."""
    if len(raw) > max_body_bytes:
        raise BadInput(f"request body is larger than {max_body_bytes} bytes", status=413)
    if not raw.strip():
        raise BadInput("request body is empty: send a JSON document")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadInput(f"request body is not valid UTF-8 (byte offset {exc.start})") from None
    try:
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_parse_float)
    except RecursionError:
        raise BadInput(f"JSON nesting is deeper than {max_json_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer beyond sys.get_int_max_str_digits()
        raise BadInput(f"request body is not acceptable JSON: {exc}") from None
    if json_depth_exceeds(value, max_json_depth):
        raise BadInput(f"JSON nesting is deeper than {max_json_depth} levels")
    canonical = json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    try:
        canonical.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("JSON strings must be valid Unicode text (lone surrogate escape such as \\ud800)") from None
    return JsonDocument(value=value, canonical=canonical)


def check_key(key: str, *, max_key_bytes: int) -> str:
    """Return ``key`` if it is a usable key: non-empty, valid text, at most ``max_key_bytes`` in UTF-8.

    Keys may contain ``/``; they are otherwise opaque.
    """
    if key == "":
        raise BadInput("key must not be empty")
    try:
        encoded = key.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInput("key must be valid Unicode text") from None
    if len(encoded) > max_key_bytes:
        raise BadInput(f"key is {len(encoded)} bytes long; the limit is {max_key_bytes} bytes (UTF-8)")
    return key


def check_node_field(body: Any, field: str, *, max_bytes: int = 256) -> str:
    """One required, non-empty string field of a membership request body (``NodeID``, ...)."""
    if not isinstance(body, dict):
        raise BadInput("request body must be a JSON object")
    if field not in body:
        raise BadInput(f"missing field {field!r}")
    value = body[field]
    if not isinstance(value, str):
        raise BadInput(f"field {field!r} must be a string")
    if not value.strip():
        raise BadInput(f"field {field!r} must not be empty")
    if len(value.encode("utf-8")) > max_bytes:
        raise BadInput(f"field {field!r} is longer than {max_bytes} bytes")
    return value
