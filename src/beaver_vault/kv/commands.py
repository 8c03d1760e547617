"""Encoding of state-machine commands (pure, standard library only).

A command is compact UTF-8 JSON with a format version and an op name::

    {"v":1,"op":"put","key":"k","value":<doc>}
    {"v":1,"op":"delete","key":"k"}
    {"v":1,"op":"cas","key":"k","expected":<doc>,"new":<doc>}   # no "expected": key must be absent
    {"v":1,"op":"append","key":"k","value":<doc>}

``decode`` is strict: unknown versions, ops or fields are errors, never silently ignored,
because a node that ignored a field it does not understand (say a future ``ttl``) would
apply a different command than its peers. New ops (txn, ttl, idempotency ids) get new op
names or optional fields, and old ones keep decoding unchanged.

Why the bounds: a committed entry is decoded on every node, so decoding must give the same
answer everywhere. Nesting is bounded explicitly (``MAX_DEPTH``) and checked on the raw bytes
before ``json.loads`` so the answer never depends on how deep the caller's stack happens to be.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

FORMAT_VERSION = 1
MAX_DEPTH = 256  # nesting of a value; the API's own limit must not exceed it
MAX_KEY_BYTES = 64 * 1024  # a safety net; the API enforces its (smaller, configurable) limit


class CommandError(ValueError):
    """A command that cannot be encoded or decoded. Deterministic: same bytes, same message."""


def canonical_json(value: Any) -> str:
    """The one text form of a JSON document: compact, UTF-8 (not \\u-escaped), object key order kept.

    Raises ``ValueError`` for NaN/Infinity and ``TypeError`` for non-JSON values."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check_key(key: object) -> str:
    if not isinstance(key, str):
        raise CommandError("key must be a string")
    if not key:
        raise CommandError("key must not be empty")
    try:
        n = len(key.encode("utf-8"))
    except UnicodeEncodeError:
        raise CommandError("key is not valid Unicode (lone surrogate)") from None
    if n > MAX_KEY_BYTES:
        raise CommandError(f"key longer than {MAX_KEY_BYTES} bytes")
    return key


def _value_json(value: Any, what: str) -> str:
    """Validate a document and return its canonical text."""
    try:
        text = canonical_json(value)
        text.encode("utf-8")  # lone surrogates cannot be stored or sent
    except RecursionError:
        raise CommandError(f"{what} is nested too deeply") from None
    except UnicodeEncodeError:
        raise CommandError(f"{what} contains a lone surrogate") from None
    except (ValueError, TypeError) as e:
        raise CommandError(f"{what} is not a JSON document: {e}") from None
    return text


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: Any
    value_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key(self.key)
        object.__setattr__(self, "value_json", _value_json(self.value, "value"))


@dataclass(frozen=True, slots=True)
class Delete:
    key: str

    def __post_init__(self) -> None:
        _check_key(self.key)


@dataclass(frozen=True, slots=True)
class Cas:
    """Set ``key`` to ``new`` if its current value equals ``expected`` (``None``: if absent).

    Equality is JSON equality (objects ignore key order, ``1 == 1.0``, ``true != 1``)."""

    key: str
    expected: Any
    new: Any
    new_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key(self.key)
        if self.expected is not None:
            _value_json(self.expected, "expected")
        object.__setattr__(self, "new_json", _value_json(self.new, "new"))


@dataclass(frozen=True, slots=True)
class Append:
    """Append ``value`` to the list at ``key`` (creating ``[value]`` if absent)."""

    key: str
    value: Any
    value_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        _check_key(self.key)
        object.__setattr__(self, "value_json", _value_json(self.value, "value"))


Command = Put | Delete | Cas | Append


# --------------------------------------------------------------------------- encoding


def encode(cmd: Command) -> bytes:
    head = f'{{"v":{FORMAT_VERSION},"op":'
    key = json.dumps(cmd.key, ensure_ascii=False)
    match cmd:
        case Put():
            text = f'{head}"put","key":{key},"value":{cmd.value_json}}}'
        case Delete():
            text = f'{head}"delete","key":{key}}}'
        case Cas():
            exp = "" if cmd.expected is None else f',"expected":{canonical_json(cmd.expected)}'
            text = f'{head}"cas","key":{key}{exp},"new":{cmd.new_json}}}'
        case Append():
            text = f'{head}"append","key":{key},"value":{cmd.value_json}}}'
    return text.encode("utf-8")


def put(key: str, value: Any) -> bytes:
    return encode(Put(key, value))


def delete(key: str) -> bytes:
    return encode(Delete(key))


def cas(key: str, expected: Any, new: Any) -> bytes:
    """``expected=None`` means "the key must be absent"."""
    return encode(Cas(key, expected, new))


def append(key: str, value: Any) -> bytes:
    return encode(Append(key, value))


# --------------------------------------------------------------------------- decoding

_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.DOTALL)


def _check_depth(data: bytes, limit: int) -> None:
    """Reject nesting deeper than ``limit`` without recursing (strings are skipped)."""
    if data.count(b"[") + data.count(b"{") <= limit:
        return  # cannot be deeper than the number of openers
    depth = 0
    for m in _TOKENS.finditer(data):
        tok = m.group()
        if tok in (b"[", b"{"):
            depth += 1
            if depth > limit:
                raise CommandError("command is nested too deeply")
        elif tok in (b"]", b"}"):
            depth -= 1


def _reject_constant(name: str) -> Any:
    raise CommandError(f"{name} is not valid JSON")


_FIELDS: dict[str, frozenset[str]] = {
    "put": frozenset({"v", "op", "key", "value"}),
    "delete": frozenset({"v", "op", "key"}),
    "cas": frozenset({"v", "op", "key", "new"}),  # plus optional "expected"
    "append": frozenset({"v", "op", "key", "value"}),
}


def decode(data: bytes) -> Command:
    """Parse and validate a command. Raises ``CommandError`` (only) for bad input."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CommandError("command must be bytes")
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("command is not valid UTF-8") from None
    _check_depth(raw, MAX_DEPTH + 1)  # +1: the command envelope itself
    try:
        obj = json.loads(text, parse_constant=_reject_constant)
    except CommandError:
        raise
    except (ValueError, RecursionError):
        raise CommandError("command is not valid JSON") from None
    if not isinstance(obj, dict):
        raise CommandError("command must be a JSON object")
    v = obj.get("v")
    if type(v) is not int or v != FORMAT_VERSION:
        raise CommandError(f"unsupported command format version: {v!r}")
    op = obj.get("op")
    if not isinstance(op, str) or op not in _FIELDS:
        raise CommandError(f"unknown op: {op!r}"[:200])
    fields = set(obj)
    if op == "cas":
        fields.discard("expected")
    if fields != _FIELDS[op]:
        raise CommandError(f"bad fields for {op}: {sorted(fields ^ _FIELDS[op])!r}"[:200])
    key = obj["key"]
    if op == "put":
        return Put(key, obj["value"])
    if op == "delete":
        return Delete(key)
    if op == "cas":
        if "expected" in obj and obj["expected"] is None:
            raise CommandError("cas: expected must be omitted (not null) to mean 'absent'")
        return Cas(key, obj.get("expected"), obj["new"])
    return Append(key, obj["value"])
