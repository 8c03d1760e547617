"""Encoding of state-machine commands (pure, standard library only).

A command is compact UTF-8 JSON with a format version and an op name (``[...]`` marks an
optional field, written only when set, so a command has exactly one encoding)::

    {"v":1,"op":"put","key":"k","value":<doc>[,"if_mod_revision":N][,"if_absent":true]
        [,"expires_at_ms":N][,"request":R]}
    {"v":1,"op":"delete","key":"k"[,"if_mod_revision":N][,"request":R]}
    {"v":1,"op":"cas","key":"k"[,"expected":<doc>],"new":<doc>[,"request":R]}   # no "expected": must be absent
    {"v":1,"op":"append","key":"k","value":<doc>[,"request":R]}
    {"v":1,"op":"delete_prefix","prefix":"p"[,"request":R]}
    {"v":1,"op":"expire","keys":["k",...],"now_ms":N}
    {"v":1,"op":"txn","compare":[...],"success":[...],"failure":[...][,"request":R]}   # see kv.txn
    {"v":1,"op":"auth","action":A,"fields":{...}}   # users, roles, tokens: see kv.auth

where ``R`` is ``{"client":"c","id":"i","now_ms":N}`` (exactly-once writes, see ``kv.state``).
Times (``now_ms``, ``expires_at_ms``) are always the LEADER's clock, stamped when it proposes:
the state machine never reads a clock, so every node decides expiry identically.

``decode`` is strict: unknown versions, ops or fields are errors, never silently ignored,
because a node that ignored a field it does not understand would apply a different command
than its peers. New features get new op names or optional fields; old commands keep
decoding unchanged.

Why the bounds: a committed entry is decoded on every node, so decoding must give the same
answer everywhere. Nesting is bounded explicitly (``MAX_DEPTH`` for a value) and checked on
the raw bytes before ``json.loads`` so the answer never depends on how deep the caller's stack
happens to be. Encoders apply the same bound, so what encodes also decodes.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from beaver_vault.kv.auth import AuthCommand, decode_auth
from beaver_vault.kv.txn import (
    MAX_TXN_BYTES,
    MAX_TXN_OPS,
    Txn,
    TxnBody,
    build_txn,
    encode_txn,
    parse_logged,
    validate_txn,
)
from beaver_vault.kv.values import (
    MAX_DEPTH,
    MAX_KEY_BYTES,
    CommandError,
    Request,
    RequestLike,
    as_request,
    canonical_json,
    check_int,
    check_key,
    check_text,
    json_str,
    parse_ttl_ms,
    too_deep,
    value_json,
)

__all__ = [
    "FORMAT_VERSION",
    "MAX_DEPTH",
    "MAX_EXPIRE_KEYS",
    "MAX_KEY_BYTES",
    "MAX_TXN_BYTES",
    "MAX_TXN_OPS",
    "Append",
    "AuthCommand",
    "Cas",
    "Command",
    "CommandError",
    "Delete",
    "DeletePrefix",
    "Expire",
    "Put",
    "Request",
    "Txn",
    "TxnBody",
    "append",
    "canonical_json",
    "cas",
    "decode",
    "delete",
    "delete_prefix",
    "encode",
    "expire",
    "parse_ttl_ms",
    "put",
    "txn",
    "validate_txn",
]

FORMAT_VERSION = 1
MAX_EXPIRE_KEYS = 1000  # keys per expire command (the leader sweeps in batches)
# ``encode`` writes the version and the op first: a put or a delete starts with one of these.
_ONE_KEY_PREFIXES = tuple(f'{{"v":{FORMAT_VERSION},"op":"{op}",'.encode() for op in ("put", "delete"))


def is_one_key_write(data: bytes) -> bool:
    """Whether ``data`` is a put or a delete of one key, told from its first bytes without
    decoding it: applying one costs about one row (a prefix delete, a transaction, an expiry
    sweep, an append or a cas may read or change many rows, or parse a large value). Bytes that
    only look like one (not a valid command) apply as a ``bad_command`` result: no work either."""
    return data.startswith(_ONE_KEY_PREFIXES)


def _request(obj: object) -> Request | None:
    try:
        return as_request(obj)
    except CommandError:
        raise
    except Exception as e:  # a mapping that misbehaves: still only CommandError out of here
        raise CommandError(f"bad request ({type(e).__name__})") from None


# --------------------------------------------------------------------------- commands


@dataclass(frozen=True, slots=True)
class Put:
    """Set ``key`` to ``value``. Preconditions: ``if_mod_revision`` (the key's mod_revision, 0 if
    absent, must equal it) and ``if_absent``. ``expires_at_ms``: absolute expiry (None: none;
    a put always replaces the key's previous expiry)."""

    key: str
    value: Any
    if_mod_revision: int | None = None
    if_absent: bool = False
    expires_at_ms: int | None = None
    request: Request | None = None
    value_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key(self.key)
        object.__setattr__(self, "value_json", value_json(self.value, "value"))
        if self.if_mod_revision is not None:
            check_int(self.if_mod_revision, "if_mod_revision")
        if type(self.if_absent) is not bool:
            raise CommandError("if_absent must be true or false")
        if self.expires_at_ms is not None:
            check_int(self.expires_at_ms, "expires_at_ms")
        object.__setattr__(self, "request", _request(self.request))


@dataclass(frozen=True, slots=True)
class Delete:
    key: str
    if_mod_revision: int | None = None
    request: Request | None = None

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.if_mod_revision is not None:
            check_int(self.if_mod_revision, "if_mod_revision")
        object.__setattr__(self, "request", _request(self.request))


@dataclass(frozen=True, slots=True)
class Cas:
    """Set ``key`` to ``new`` if its current value equals ``expected`` (``None``: if absent).

    Equality is JSON equality (objects ignore key order, ``1 == 1.0``, ``true != 1``). The key
    keeps its expiry, if any."""

    key: str
    expected: Any
    new: Any
    request: Request | None = None
    new_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key(self.key)
        if self.expected is not None:
            value_json(self.expected, "expected")
        object.__setattr__(self, "new_json", value_json(self.new, "new"))
        object.__setattr__(self, "request", _request(self.request))


@dataclass(frozen=True, slots=True)
class Append:
    """Append ``value`` to the list at ``key`` (creating ``[value]`` if absent); keeps the expiry."""

    key: str
    value: Any
    request: Request | None = None
    value_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_key(self.key)
        object.__setattr__(self, "value_json", value_json(self.value, "value"))
        object.__setattr__(self, "request", _request(self.request))


@dataclass(frozen=True, slots=True)
class DeletePrefix:
    """Delete every key starting with ``prefix`` (``""``: every key; the API guards that)."""

    prefix: str
    request: Request | None = None

    def __post_init__(self) -> None:
        check_text(self.prefix, "prefix", max_bytes=MAX_KEY_BYTES, allow_empty=True)
        object.__setattr__(self, "request", _request(self.request))


@dataclass(frozen=True, slots=True)
class Expire:
    """Delete each of ``keys`` whose stored ``expires_at_ms <= now_ms`` (leader's clock)."""

    keys: tuple[str, ...]
    now_ms: int

    def __post_init__(self) -> None:
        if not isinstance(self.keys, tuple):
            raise CommandError("expire keys must be a tuple")
        if not 1 <= len(self.keys) <= MAX_EXPIRE_KEYS:
            raise CommandError(f"expire takes 1 to {MAX_EXPIRE_KEYS} keys")
        for k in self.keys:
            check_key(k)
        check_int(self.now_ms, "now_ms")


Command = Put | Delete | Cas | Append | DeletePrefix | Expire | Txn | AuthCommand


# --------------------------------------------------------------------------- encoding


def _req(request: Request | None) -> str:
    return "" if request is None else f',"request":{request.to_json()}'


def encode(cmd: Command) -> bytes:
    head = f'{{"v":{FORMAT_VERSION},"op":'
    match cmd:
        case Put():
            opt = "" if cmd.if_mod_revision is None else f',"if_mod_revision":{cmd.if_mod_revision}'
            opt += ',"if_absent":true' if cmd.if_absent else ""
            opt += "" if cmd.expires_at_ms is None else f',"expires_at_ms":{cmd.expires_at_ms}'
            text = f'{head}"put","key":{json_str(cmd.key)},"value":{cmd.value_json}{opt}{_req(cmd.request)}}}'
        case Delete():
            opt = "" if cmd.if_mod_revision is None else f',"if_mod_revision":{cmd.if_mod_revision}'
            text = f'{head}"delete","key":{json_str(cmd.key)}{opt}{_req(cmd.request)}}}'
        case Cas():
            exp = "" if cmd.expected is None else f',"expected":{canonical_json(cmd.expected)}'
            text = f'{head}"cas","key":{json_str(cmd.key)}{exp},"new":{cmd.new_json}{_req(cmd.request)}}}'
        case Append():
            text = f'{head}"append","key":{json_str(cmd.key)},"value":{cmd.value_json}{_req(cmd.request)}}}'
        case DeletePrefix():
            text = f'{head}"delete_prefix","prefix":{json_str(cmd.prefix)}{_req(cmd.request)}}}'
        case Expire():
            keys = ",".join(json_str(k) for k in cmd.keys)
            text = f'{head}"expire","keys":[{keys}],"now_ms":{cmd.now_ms}}}'
        case Txn():
            text = encode_txn(cmd, head)
        case AuthCommand():
            text = cmd.to_json()
    return text.encode("utf-8")


def put(
    key: str,
    value: Any,
    *,
    if_mod_revision: int | None = None,
    if_absent: bool = False,
    expires_at_ms: int | None = None,
    request: RequestLike = None,
) -> bytes:
    """A put; a failed precondition changes nothing (result ``"precondition_failed": true``)."""
    return encode(Put(key, value, if_mod_revision, if_absent, expires_at_ms, _request(request)))


def delete(key: str, *, if_mod_revision: int | None = None, request: RequestLike = None) -> bytes:
    return encode(Delete(key, if_mod_revision, _request(request)))


def cas(key: str, expected: Any, new: Any, *, request: RequestLike = None) -> bytes:
    """``expected=None`` means "the key must be absent"."""
    return encode(Cas(key, expected, new, _request(request)))


def append(key: str, value: Any, *, request: RequestLike = None) -> bytes:
    return encode(Append(key, value, _request(request)))


def delete_prefix(prefix: str, *, request: RequestLike = None) -> bytes:
    return encode(DeletePrefix(prefix, _request(request)))


def expire(keys: Sequence[str], now_ms: int) -> bytes:
    """Proposed by the leader for keys it found expired (``Storage.expired_keys``)."""
    if isinstance(keys, str):
        raise CommandError("expire takes a list of keys, not a string")
    return encode(Expire(tuple(keys), now_ms))


def txn(
    compare: Sequence[Mapping[str, Any]],
    success: Sequence[Mapping[str, Any]],
    failure: Sequence[Mapping[str, Any]],
    *,
    now_ms: int | None = None,
    request: RequestLike = None,
) -> bytes:
    """A transaction (shape and semantics in ``kv.txn``). ``now_ms`` (leader's clock) is needed
    only if a put has a ``ttl``/``ttl_ms``: it becomes ``expires_at_ms = now_ms + ttl``."""
    return encode(build_txn(compare, success, failure, now_ms, _request(request)))


# --------------------------------------------------------------------------- decoding


def _reject_constant(name: str) -> Any:
    raise CommandError(f"{name} is not valid JSON")


_REQUIRED: dict[str, frozenset[str]] = {
    "put": frozenset({"v", "op", "key", "value"}),
    "delete": frozenset({"v", "op", "key"}),
    "cas": frozenset({"v", "op", "key", "new"}),
    "append": frozenset({"v", "op", "key", "value"}),
    "delete_prefix": frozenset({"v", "op", "prefix"}),
    "expire": frozenset({"v", "op", "keys", "now_ms"}),
    "txn": frozenset({"v", "op", "compare", "success", "failure"}),
}
_OPTIONAL: dict[str, frozenset[str]] = {
    "put": frozenset({"if_mod_revision", "if_absent", "expires_at_ms", "request"}),
    "delete": frozenset({"if_mod_revision", "request"}),
    "cas": frozenset({"expected", "request"}),
    "append": frozenset({"request"}),
    "delete_prefix": frozenset({"request"}),
    "expire": frozenset(),
    "txn": frozenset({"request"}),
}
# The deepest place a value sits: txn envelope -> branch list -> op object -> value.
_ENVELOPE_DEPTH = {"txn": 3}


# One decoder for every command: ``json.loads`` with hooks builds a new one per call (~5 us).
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode(data: bytes) -> Command:
    """Parse and validate a command. Raises ``CommandError`` (only) for bad input."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CommandError("command must be bytes")
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise CommandError("command is not valid UTF-8") from None
    if too_deep(raw, MAX_DEPTH + max(_ENVELOPE_DEPTH.values())):
        raise CommandError("command is nested too deeply")
    try:
        obj = _DECODER.decode(text)
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
    if op == "auth":
        try:
            return decode_auth(obj)
        except CommandError:
            raise
        except Exception as e:  # be total
            raise CommandError(f"bad auth command ({type(e).__name__})") from None
    if not isinstance(op, str) or op not in _REQUIRED:
        raise CommandError(f"unknown op: {op!r}"[:200])
    if too_deep(raw, MAX_DEPTH + _ENVELOPE_DEPTH.get(op, 1)):
        raise CommandError("command is nested too deeply")
    fields, required = set(obj), _REQUIRED[op]
    if not required <= fields <= required | _OPTIONAL[op]:
        wrong = (required - fields) | (fields - required - _OPTIONAL[op])
        raise CommandError(f"bad fields for {op}: {sorted(wrong)!r}"[:200])
    try:
        return _build(op, obj)
    except CommandError:
        raise
    except Exception as e:  # constructors validate with CommandError; be total anyway
        raise CommandError(f"bad {op} command ({type(e).__name__})") from None


def _build(op: str, obj: dict[str, Any]) -> Command:
    request = _request(obj.get("request"))
    if "request" in obj and request is None:
        raise CommandError("request must be omitted, not null")
    if op in ("put", "delete") and "if_mod_revision" in obj and obj["if_mod_revision"] is None:
        raise CommandError(f"{op}: if_mod_revision must be omitted, not null")
    if op == "put":
        if "if_absent" in obj and obj["if_absent"] is not True:
            raise CommandError("put: if_absent must be omitted unless true")
        if "expires_at_ms" in obj and obj["expires_at_ms"] is None:
            raise CommandError("put: expires_at_ms must be omitted, not null")
        return Put(
            obj["key"], obj["value"], obj.get("if_mod_revision"), "if_absent" in obj, obj.get("expires_at_ms"), request
        )
    if op == "delete":
        return Delete(obj["key"], obj.get("if_mod_revision"), request)
    if op == "cas":
        if "expected" in obj and obj["expected"] is None:
            raise CommandError("cas: expected must be omitted (not null) to mean 'absent'")
        return Cas(obj["key"], obj.get("expected"), obj["new"], request)
    if op == "append":
        return Append(obj["key"], obj["value"], request)
    if op == "delete_prefix":
        return DeletePrefix(obj["prefix"], request)
    if op == "expire":
        if not isinstance(obj["keys"], list):
            raise CommandError("expire keys must be a list")
        return Expire(tuple(obj["keys"]), obj["now_ms"])
    return parse_logged(obj, request)
