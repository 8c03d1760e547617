"""Transactions as in etcd: compare, then run one of two branches, atomically in one entry (pure).

Request shape (the body of ``POST /api/v1/txn``)::

    {"compare": [{"key": "k", "target": "value", "op": "==", "value": "b"}, ...],
     "success": [{"op": "put", "key": "k", "value": <doc>, "ttl": "30s"}, {"op": "delete", "key": "k"},
                 {"op": "get", "key": "k"}, ...],
     "failure": [...]}

Targets: ``value`` (any JSON document), ``exists`` (``true``/``false``, ops ``==``/``!=`` only),
``version``, ``mod_revision``, ``create_revision`` (integers >= 0). Ops ``==``, ``!=``, ``<``,
``>``. Semantics, chosen to match etcd where JSON allows:

* A missing key has version and revisions 0, and ``exists`` false; a *value* compare on a
  missing key is always false (etcd does the same: there is no value to compare).
* Value ``==``/``!=`` is JSON equality (``kv.records.json_equal``). Value ``<``/``>`` order two
  numbers numerically or two strings by code point; any other pair compares false.
* All compares must hold for ``success`` to run, otherwise ``failure`` runs (empty compare:
  success). Branch operations run in order and each sees the previous ones (a ``get`` after a
  ``put`` of the same key reads the new value). As in etcd, a branch may write (put/delete)
  a key at most once, so every key changes at most once per revision.
* A put may carry a TTL: ``ttl`` (seconds or ``"30s"``, see ``values.parse_ttl_ms``) or an
  absolute ``expires_at_ms``. The TTL is turned into ``expires_at_ms`` with the leader's clock
  when the command is encoded; the log only ever holds absolute expiries. A put without a
  TTL clears any expiry the key had.

Bounds: at most ``MAX_TXN_OPS`` compares + operations in total and ``MAX_TXN_BYTES`` of JSON.
``validate_txn`` checks a request body before anything is proposed; ``encode_txn``/``parse``
build and read the log form. ``run_txn`` evaluates a decoded transaction against a store.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypedDict

from beaver_vault.kv.records import KeyRecord, KVStore, delete_event, json_equal, put_event, written
from beaver_vault.kv.values import (
    MAX_INT,
    CommandError,
    Request,
    canonical_json,
    check_int,
    check_key,
    json_str,
    parse_ttl_ms,
    value_json,
)

MAX_TXN_OPS = 128  # compares + success + failure operations
MAX_TXN_BYTES = 1024 * 1024  # canonical JSON of the request body
TARGETS = ("value", "exists", "version", "mod_revision", "create_revision")
COMPARE_OPS = ("==", "!=", "<", ">")


@dataclass(frozen=True, slots=True)
class Compare:
    key: str
    target: str
    op: str
    value: Any


@dataclass(frozen=True, slots=True)
class TxnPut:
    key: str
    value: Any
    expires_at_ms: int | None = None
    value_json: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "value_json", value_json(self.value, "value"))


@dataclass(frozen=True, slots=True)
class TxnDelete:
    key: str


@dataclass(frozen=True, slots=True)
class TxnGet:
    key: str


TxnOp = TxnPut | TxnDelete | TxnGet


@dataclass(frozen=True, slots=True)
class Txn:
    compare: tuple[Compare, ...]
    success: tuple[TxnOp, ...]
    failure: tuple[TxnOp, ...]
    request: Request | None = None


class TxnBody(TypedDict):
    """A validated, normalised transaction request (``validate_txn``'s answer)."""

    compare: list[dict[str, Any]]
    success: list[dict[str, Any]]
    failure: list[dict[str, Any]]


# --------------------------------------------------------------------------- validation


def _fields(obj: object, where: str, required: set[str], optional: set[str]) -> Mapping[str, Any]:
    if not isinstance(obj, dict):
        raise CommandError(f"{where} must be an object")
    names = set(obj)
    if not required <= names <= required | optional:
        missing, unknown = sorted(required - names), sorted(names - required - optional)
        raise CommandError(f"{where}: missing fields {missing!r}, unknown fields {unknown!r}"[:200])
    return obj


def _compare(obj: object, where: str) -> Compare:
    c = _fields(obj, where, {"key", "target", "op", "value"}, set())
    key = check_key(c["key"], f"{where} key")
    target, op, value = c["target"], c["op"], c["value"]
    if target not in TARGETS:
        raise CommandError(f"{where}: target must be one of {', '.join(TARGETS)}")
    if op not in COMPARE_OPS:
        raise CommandError(f"{where}: op must be one of {' '.join(COMPARE_OPS)}")
    if target == "value":
        value_json(value, f"{where} value")
    elif target == "exists":
        if type(value) is not bool or op not in ("==", "!="):
            raise CommandError(f"{where}: exists compares true or false with == or !=")
    else:
        check_int(value, f"{where} value")
    return Compare(key, target, op, value)


def _expiry(p: Mapping[str, Any], where: str, now_ms: int | None, log: bool) -> tuple[int | None, int | None]:
    """(expires_at_ms, unresolved ttl_ms) of a put."""
    given = [name for name in ("ttl", "ttl_ms", "expires_at_ms") if name in p]
    if len(given) > 1:
        raise CommandError(f"{where}: give at most one of ttl, ttl_ms, expires_at_ms")
    if not given:
        return None, None
    if given[0] == "expires_at_ms":
        return check_int(p["expires_at_ms"], f"{where} expires_at_ms"), None
    if log:
        raise CommandError(f"{where}: a logged put carries expires_at_ms, not a ttl")
    if given[0] == "ttl":
        ttl_ms = parse_ttl_ms(p["ttl"])
    else:
        ttl_ms = check_int(p["ttl_ms"], f"{where} ttl_ms")
        if ttl_ms == 0:
            raise CommandError(f"{where}: ttl_ms must be positive")
    if now_ms is None:
        return None, ttl_ms
    return min(now_ms + ttl_ms, MAX_INT), None


def _branch(ops: object, where: str, now_ms: int | None, log: bool) -> tuple[list[TxnOp], list[int | None]]:
    if not isinstance(ops, list):
        raise CommandError(f"{where} must be a list")
    out: list[TxnOp] = []
    ttls: list[int | None] = []
    writes: set[str] = set()
    for i, obj in enumerate(ops):
        at = f"{where}[{i}]"
        kind = obj.get("op") if isinstance(obj, dict) else None
        ttl_ms = None
        if kind == "put":
            optional = {"expires_at_ms"} if log else {"ttl", "ttl_ms", "expires_at_ms"}
            p = _fields(obj, at, {"op", "key", "value"}, optional)
            key = check_key(p["key"], f"{at} key")
            expires, ttl_ms = _expiry(p, at, now_ms, log)
            try:
                op: TxnOp = TxnPut(key, p["value"], expires)
            except CommandError as e:
                raise CommandError(f"{at}: {e}") from None
        elif kind in ("delete", "get"):
            p = _fields(obj, at, {"op", "key"}, set())
            key = check_key(p["key"], f"{at} key")
            op = TxnDelete(key) if kind == "delete" else TxnGet(key)
        else:
            raise CommandError(f"{at}: op must be put, delete or get")
        if not isinstance(op, TxnGet):
            if key in writes:
                raise CommandError(f"{at}: key {key!r} is written twice in one branch"[:200])
            writes.add(key)
        out.append(op)
        ttls.append(ttl_ms)
    return out, ttls


def _parse_body(obj: object, now_ms: int | None, log: bool) -> tuple[Txn, list[int | None], list[int | None]]:
    allowed = {"compare", "success", "failure"} | ({"v", "op", "request"} if log else set())
    if not isinstance(obj, dict):
        raise CommandError("txn must be an object with compare, success and failure")
    unknown = sorted(set(obj) - allowed)
    if unknown:
        raise CommandError(f"txn: unknown fields {unknown!r}"[:200])
    compare, success, failure = obj.get("compare", []), obj.get("success", []), obj.get("failure", [])
    for name, part in (("compare", compare), ("success", success), ("failure", failure)):
        if not isinstance(part, list):
            raise CommandError(f"txn {name} must be a list")
    total = len(compare) + len(success) + len(failure)
    if total > MAX_TXN_OPS:
        raise CommandError(f"txn has {total} compares and operations; at most {MAX_TXN_OPS} are allowed")
    if not log:
        try:
            size = len(canonical_json({"compare": compare, "success": success, "failure": failure}).encode())
        except (ValueError, TypeError, RecursionError, UnicodeEncodeError):
            size = -1
        if size > MAX_TXN_BYTES:
            raise CommandError(f"txn is larger than {MAX_TXN_BYTES} bytes of JSON")
    cmps = tuple(_compare(c, f"compare[{i}]") for i, c in enumerate(compare))
    ok, ok_ttls = _branch(success, "success", now_ms, log)
    ko, ko_ttls = _branch(failure, "failure", now_ms, log)
    return Txn(cmps, tuple(ok), tuple(ko)), ok_ttls, ko_ttls


def _op_dict(op: TxnOp, ttl_ms: int | None) -> dict[str, Any]:
    match op:
        case TxnPut():
            d: dict[str, Any] = {"op": "put", "key": op.key, "value": op.value}
            if ttl_ms is not None:
                d["ttl_ms"] = ttl_ms
            elif op.expires_at_ms is not None:
                d["expires_at_ms"] = op.expires_at_ms
            return d
        case TxnDelete():
            return {"op": "delete", "key": op.key}
        case TxnGet():
            return {"op": "get", "key": op.key}


def validate_txn(obj: object) -> TxnBody:
    """Check a transaction request body; return it normalised or raise ``CommandError``.

    The normalised form has all three lists; compares are ``{"key", "target", "op", "value"}``;
    ops are ``{"op": "get"|"delete", "key"}`` or ``{"op": "put", "key", "value"}`` plus
    ``"ttl_ms"`` (a ``ttl`` in whole milliseconds) or ``"expires_at_ms"`` if one was given.
    Pass it to ``kv.commands.txn(**normalised, now_ms=leader_clock_ms, request=...)``."""
    t, ok_ttls, ko_ttls = _parse_body(obj, None, log=False)
    return {
        "compare": [{"key": c.key, "target": c.target, "op": c.op, "value": c.value} for c in t.compare],
        "success": [_op_dict(op, ttl) for op, ttl in zip(t.success, ok_ttls, strict=True)],
        "failure": [_op_dict(op, ttl) for op, ttl in zip(t.failure, ko_ttls, strict=True)],
    }


def build_txn(
    compare: Sequence[Any], success: Sequence[Any], failure: Sequence[Any], now_ms: int | None, request: Request | None
) -> Txn:
    """A ``Txn`` from request-shaped lists; TTLs become ``expires_at_ms = now_ms + ttl``."""
    if now_ms is not None:
        check_int(now_ms, "now_ms")
    body = {"compare": list(compare), "success": list(success), "failure": list(failure)}
    t, ok_ttls, ko_ttls = _parse_body(body, now_ms, log=False)
    if any(ttl is not None for ttl in ok_ttls + ko_ttls):
        raise CommandError("txn: a put has a ttl but no now_ms was given to resolve it")
    return Txn(t.compare, t.success, t.failure, request)


def parse_logged(obj: Mapping[str, Any], request: Request | None) -> Txn:
    """The ``Txn`` of a decoded log command (envelope already checked)."""
    t, _, _ = _parse_body(dict(obj), None, log=True)
    return Txn(t.compare, t.success, t.failure, request)


def encode_txn(t: Txn, head: str) -> str:
    def op_text(op: TxnOp) -> str:
        key = json_str(op.key)
        match op:
            case TxnPut():
                exp = "" if op.expires_at_ms is None else f',"expires_at_ms":{op.expires_at_ms}'
                return f'{{"op":"put","key":{key},"value":{op.value_json}{exp}}}'
            case TxnDelete():
                return f'{{"op":"delete","key":{key}}}'
            case TxnGet():
                return f'{{"op":"get","key":{key}}}'

    cmps = ",".join(
        f'{{"key":{json_str(c.key)},"target":"{c.target}","op":"{c.op}","value":{canonical_json(c.value)}}}'
        for c in t.compare
    )
    ok = ",".join(op_text(op) for op in t.success)
    ko = ",".join(op_text(op) for op in t.failure)
    req = "" if t.request is None else f',"request":{t.request.to_json()}'
    return f'{head}"txn","compare":[{cmps}],"success":[{ok}],"failure":[{ko}]{req}}}'


# --------------------------------------------------------------------------- evaluation


def _order(a: Any, op: str, b: Any) -> bool:
    if op == "<":
        return bool(a < b)
    return bool(a > b)


def _holds(rec: KeyRecord | None, c: Compare) -> bool:
    if c.target == "value":
        if rec is None:
            return False
        doc = rec.document()
        if c.op in ("==", "!="):
            return json_equal(doc, c.value) == (c.op == "==")
        numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (doc, c.value))
        strings = isinstance(doc, str) and isinstance(c.value, str)
        return (numbers or strings) and _order(doc, c.op, c.value)
    if c.target == "exists":
        return ((rec is not None) is c.value) == (c.op == "==")
    actual: int = 0 if rec is None else getattr(rec, c.target)
    if c.op in ("==", "!="):
        return (actual == int(c.value)) == (c.op == "==")
    return _order(actual, c.op, c.value)


def run_txn(store: KVStore, index: int, t: Txn) -> dict[str, Any]:
    """Evaluate ``t`` at revision ``index``: ``{"op": "txn", "succeeded", "results", "revision"}``
    plus ``"events"`` if anything changed."""
    succeeded = all(_holds(store.get(c.key), c) for c in t.compare)
    results: list[dict[str, Any]] = []
    events: list[dict[str, Any]] = []
    for op in t.success if succeeded else t.failure:
        cur = store.get(op.key)
        match op:
            case TxnPut():
                store.put(op.key, written(cur, op.value_json, index, op.expires_at_ms))
                results.append({"op": "put", "key": op.key, "revision": index, "created": cur is None})
                events.append(put_event(op.key, op.value, index))
            case TxnDelete():
                if cur is not None:
                    store.delete(op.key)
                    events.append(delete_event(op.key, index))
                results.append({"op": "delete", "key": op.key, "deleted": cur is not None, "revision": index})
            case TxnGet():
                results.append(get_result(op.key, cur))
    out: dict[str, Any] = {"op": "txn", "succeeded": succeeded, "results": results, "revision": index}
    if events:
        out["events"] = events
    return out


def get_result(key: str, rec: KeyRecord | None) -> dict[str, Any]:
    if rec is None:
        return {"op": "get", "key": key, "found": False}
    out = {
        "op": "get",
        "key": key,
        "found": True,
        "value": rec.document(),
        "create_revision": rec.create_revision,
        "mod_revision": rec.mod_revision,
        "version": rec.version,
    }
    if rec.expires_at_ms is not None:
        out["expires_at_ms"] = rec.expires_at_ms
    return out
