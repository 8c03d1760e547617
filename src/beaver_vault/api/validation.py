"""Input validation for the HTTP API: keys, JSON bodies, headers and query parameters.

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
   re-encoding the canonical form as UTF-8 fails on them;
6. free of objects that name a member twice (``{"a": 1, "a": 2}``): parsers disagree on which
   value wins, so such a document is refused rather than read one way here and another way by
   the client that wrote it.

The canonical text (compact separators, non-ASCII kept) is what the key-value state
machine stores, so the API returns it alongside the parsed value.

Headers and query parameters: ``If-Match`` is exactly one strong tag ``"<revision>"``
(``*``, weak tags and lists are refused, not ignored: a condition the client believes it
sent must never be dropped); ``If-None-Match`` on a write is exactly ``*``; opaque tokens
(``Idempotency-Key``, ``X-Beaver-Vault-Client``) are 1..128 visible ASCII characters without
spaces, quotes or commas; a watch's resume point is ``R`` or ``R:n``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from beaver_vault.errors import Rejected
from beaver_vault.kv.values import canonical_json


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


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: an object that names one member twice is refused (parsers disagree
    on which value wins, so the document does not say one thing)."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:
            if name in seen:
                raise BadInput(f"duplicate name {name[:60]!r} in a JSON object: each name may appear once")
            seen.add(name)
    return obj


# One decoder for every body (``json.loads`` with hooks builds a new one per call).
_DECODER = json.JSONDecoder(
    parse_constant=_reject_constant, parse_float=_parse_float, object_pairs_hook=_object_without_duplicates
)


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
        value = _DECODER.decode(text)
    except RecursionError:
        raise BadInput(f"JSON nesting is deeper than {max_json_depth} levels") from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"request body is not valid JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # e.g. an integer beyond sys.get_int_max_str_digits()
        raise BadInput(f"request body is not acceptable JSON: {exc}") from None
    if json_depth_exceeds(value, max_json_depth):
        raise BadInput(f"JSON nesting is deeper than {max_json_depth} levels")
    canonical = canonical_json(value)
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


# --------------------------------------------------------------------------- query parameters and headers

_ETAG = re.compile(r'"(?P<revision>[0-9]{1,19})"')
# Visible ASCII without spaces, quotes or commas: safe in a header, a log line and a JSON key.
_TOKEN = re.compile(r"[!#-+\--~]+")


def parse_bool(value: str | None, name: str, *, default: bool = False) -> bool:
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadInput(f"{name} must be true or false; got {value[:40]!r}")


def parse_optional_int(value: str | None, name: str, *, lo: int, hi: int) -> int | None:
    """A non-negative integer query parameter within ``[lo, hi]``; ``None`` when absent."""
    if value is None:
        return None
    text = value.strip()
    if not text.isascii() or not text.isdigit() or len(text) > 19:
        raise BadInput(f"{name} must be a non-negative integer; got {value[:40]!r}")
    number = int(text)
    if not lo <= number <= hi:
        raise BadInput(f"{name} must be between {lo} and {hi}; got {number}")
    return number


def parse_int(value: str | None, name: str, *, default: int, lo: int, hi: int) -> int:
    number = parse_optional_int(value, name, lo=lo, hi=hi)
    return default if number is None else number


def parse_if_match(value: str) -> int:
    """``If-Match: "<revision>"``: one strong entity tag made of the key's mod_revision."""
    text = value.strip()
    m = _ETAG.fullmatch(text)
    if m is None:
        if text == "*":
            raise BadInput('If-Match: * is not supported; give the revision as If-Match: "<mod_revision>"')
        if text.startswith("W/"):
            raise BadInput("If-Match needs a strong entity tag; weak tags (W/...) never match")
        raise BadInput(f'If-Match must be one quoted revision such as "42"; got {text[:40]!r}')
    return int(m.group("revision"))


def check_if_none_match(value: str) -> None:
    """Writes only support ``If-None-Match: *`` (create only if absent)."""
    if value.strip() != "*":
        raise BadInput(f"If-None-Match on a write must be *; got {value[:40]!r}")


def check_token(value: str, name: str, *, max_bytes: int = 128) -> str:
    """An opaque header token (idempotency key, client name): 1..max_bytes visible ASCII chars."""
    text = value.strip()
    if not text:
        raise BadInput(f"{name} must not be empty")
    if len(text) > max_bytes:
        raise BadInput(f"{name} is longer than {max_bytes} characters")
    if not text.isascii() or _TOKEN.fullmatch(text) is None:
        raise BadInput(f"{name} must be visible ASCII without spaces, quotes or commas")
    return text


def parse_resume_point(value: str) -> tuple[int, int]:
    """A watch's ``Last-Event-ID``: ``"R"`` (every event of revision R was seen: resume at R+1)
    or ``"R:n"`` (only the first n events of revision R were seen: resume at R, skip n).
    Returns ``(from_revision, skip)``."""
    text = value.strip()
    revision, sep, seen = text.partition(":")
    if not revision.isascii() or not revision.isdigit() or len(revision) > 19:
        raise BadInput(f"Last-Event-ID must be a revision; got {text[:40]!r}")
    if not sep:
        return int(revision) + 1, 0
    if not seen.isascii() or not seen.isdigit() or len(seen) > 9 or int(seen) < 1:
        raise BadInput(f"Last-Event-ID must be R or R:n; got {text[:40]!r}")
    return int(revision), int(seen)
