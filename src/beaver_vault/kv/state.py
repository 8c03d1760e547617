"""The key-value state machine (pure): ``apply(store, index, data) -> result``.

A value is any JSON document, stored as its canonical JSON text. Every key carries
``create_revision`` and ``mod_revision`` (the Raft index of the entry that created / last
modified it: the store's revision increases with every write), ``version`` (number of writes
since creation) and an optional ``expires_at_ms``. The store itself is injected (``KVStore``):
memory for tests and the simulator, SQLite in production; apply runs inside the storage's
transaction.

``apply`` never raises for bad data: a committed entry is applied on every node, so a command
that does not decode yields ``{"error": ..., "code": "bad_command"}`` and changes nothing,
identically everywhere. Exceptions raised by the store itself (I/O) do propagate: the storage
rolls the batch back and the node stops.

Results (all JSON-able; ``revision`` is the entry's index):

* put: ``{"op": "put", "key", "revision", "created"[, "expires_at_ms"]}``;
  delete: ``{"op": "delete", "key", "deleted", "revision"}``;
  a failed ``if_mod_revision``/``if_absent`` precondition changes nothing and gives
  ``{"op", "key", "precondition_failed": true, "mod_revision": <current, 0 if absent>}``.
* cas / append: as before (``succeeded``/``current``, ``value``; ``not_a_list`` error).
* delete_prefix: ``{"op": "delete_prefix", "prefix", "deleted": <count>, "revision"}``.
* expire: ``{"op": "expire", "deleted": <count>, "revision"}``. A key is deleted only if its
  stored expiry is ``<= now_ms``: one re-put meanwhile without a TTL, or with a later expiry,
  survives the expire that was proposed for its old incarnation.
* txn: ``{"op": "txn", "succeeded", "results", "revision"}`` (see ``kv.txn``).
* auth: ``{"op": "auth", "action", "revision", ...}`` or an error result (see ``kv.auth``); no events.

Watch events: a result of a command that changed state also carries ``"events"``, the list of
``{"type": "put"|"delete", "key", "value" (document; null for a delete), "revision"}`` in the
order the changes were made; ``"events"`` is absent exactly when nothing changed.

Exactly-once writes: a command may carry ``request = (client, id, now_ms)``. Before running it,
apply forgets remembered requests older than ``now_ms - expiry_ms`` (leader-stamped time, so
every node forgets the same ones); if (client, id) is still remembered the command is not run
and the original result comes back with ``"duplicate": true`` (and no events). Otherwise the
result (without events) is remembered, and the client's oldest requests beyond
``per_client`` are forgotten. A retry later than the expiry is applied again: that is the
documented window (10 minutes by default). The table is in the store, so it travels in
snapshots and survives restarts.

The table is bounded three ways: by age (``expiry_ms``), per client (``per_client``) and in all
(``total_max``, the oldest first, checked every ``trim_every`` entries). A client whose request
was forgotten because of the global cap sees exactly what it sees after the expiry: a retry
with the same id is applied again as a new write (no ``"duplicate": true``, a new revision), so
a client that needs exactly-once beyond that must read before retrying.

A prefix delete of more than ``DELETE_PREFIX_EVENTS_MAX`` keys yields ONE watch event,
``{"type": "delete_prefix", "key": <prefix>, "value": null, "revision", "deleted": <count>}``,
instead of one ``delete`` per key (watchers whose prefix overlaps it receive it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from beaver_vault.kv.auth import apply_auth
from beaver_vault.kv.commands import (
    Append,
    AuthCommand,
    Cas,
    Command,
    CommandError,
    Delete,
    DeletePrefix,
    Expire,
    Put,
    Txn,
    decode,
)
from beaver_vault.kv.records import (
    KeyRecord,
    KVStore,
    RequestRecord,
    delete_event,
    delete_prefix_event,
    json_equal,
    put_event,
    written,
)
from beaver_vault.kv.txn import run_txn
from beaver_vault.kv.values import canonical_json

__all__ = [
    "DEFAULT_POLICY",
    "KVStore",
    "KeyRecord",
    "RequestPolicy",
    "RequestRecord",
    "apply",
    "json_equal",
]

DELETE_PREFIX_PAGE = 1000
# A prefix delete of more keys than this yields ONE ``delete_prefix`` event (the prefix and the
# count) instead of one event per key: deleting millions of keys must not build millions of
# events in memory (the result, the watch history, every watcher's buffer).
DELETE_PREFIX_EVENTS_MAX = 1000


@dataclass(frozen=True, slots=True)
class RequestPolicy:
    """How long and how many idempotent requests the store remembers (a part of the replicated
    state machine's definition: every node must use the same policy)."""

    expiry_ms: int = 10 * 60 * 1000
    per_client: int = 1000
    # All clients together: beyond about this many, the oldest are forgotten first (checked
    # every ``trim_every`` entries, by index, so every node trims at the same entries).
    total_max: int = 100_000
    trim_every: int = 256
    result_bytes_max: int = 64 * 1024  # larger results are remembered in summary


DEFAULT_POLICY = RequestPolicy()


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {**extra, "error": message, "code": code}


def apply(store: KVStore, index: int, data: bytes, *, policy: RequestPolicy = DEFAULT_POLICY) -> dict[str, Any]:
    """Apply the command ``data`` committed at log ``index``; return its result (JSON-able)."""
    try:
        cmd = decode(data)
    except CommandError as e:
        return _error("bad_command", str(e))
    except Exception as e:  # decode is meant to raise CommandError only; be safe anyway
        return _error("bad_command", f"undecodable command ({type(e).__name__})")

    if isinstance(cmd, AuthCommand):
        return apply_auth(store, index, cmd)
    req = None if isinstance(cmd, Expire) else cmd.request
    if isinstance(cmd, Expire):
        store.purge_requests(cmd.now_ms - policy.expiry_ms)
    if req is not None:
        store.purge_requests(req.now_ms - policy.expiry_ms)
        seen = store.get_request(req.client, req.id)
        if seen is not None:
            return _duplicate(seen)
    result = _run(store, index, cmd)
    if req is not None:
        store.put_request(req.client, req.id, RequestRecord(index, req.now_ms, _remembered(result, policy)))
        store.trim_requests(req.client, policy.per_client)
        if index % policy.trim_every == 0:
            store.trim_all_requests(policy.total_max)
    return result


def _duplicate(seen: RequestRecord) -> dict[str, Any]:
    try:
        original = json.loads(seen.result)
    except ValueError:
        original = None
    if not isinstance(original, dict):
        return _error("bad_request_record", "the remembered result of this request is unreadable", duplicate=True)
    original["duplicate"] = True
    return original


def _remembered(result: dict[str, Any], policy: RequestPolicy) -> str:
    kept = {k: v for k, v in result.items() if k != "events"}
    text = canonical_json(kept)
    if len(text.encode("utf-8")) <= policy.result_bytes_max:
        return text
    summary = {k: v for k, v in kept.items() if not isinstance(v, list | dict)}
    summary["result_omitted"] = True
    return canonical_json(summary)


def _run(store: KVStore, index: int, cmd: Command) -> dict[str, Any]:
    match cmd:
        case Put():
            return _put(store, index, cmd)
        case Delete():
            return _delete(store, index, cmd)
        case Cas():
            return _cas(store, index, cmd)
        case Append():
            return _append(store, index, cmd)
        case DeletePrefix():
            return _delete_prefix(store, index, cmd)
        case Expire():
            return _expire(store, index, cmd)
        case Txn():
            return run_txn(store, index, cmd)
        case AuthCommand():
            return apply_auth(store, index, cmd)


def _precondition_failed(op: str, key: str, cur: KeyRecord | None) -> dict[str, Any]:
    return {"op": op, "key": key, "precondition_failed": True, "mod_revision": 0 if cur is None else cur.mod_revision}


def _put(store: KVStore, index: int, cmd: Put) -> dict[str, Any]:
    key = cmd.key
    if cmd.if_mod_revision is None and not cmd.if_absent:
        created = store.put_value(key, cmd.value_json, index, cmd.expires_at_ms)  # no read first
    else:
        cur = store.get(key)
        current_mod = 0 if cur is None else cur.mod_revision
        if (cmd.if_mod_revision is not None and current_mod != cmd.if_mod_revision) or (cmd.if_absent and cur is not None):
            return _precondition_failed("put", key, cur)
        store.put(key, written(cur, cmd.value_json, index, cmd.expires_at_ms))
        created = cur is None
    out: dict[str, Any] = {"op": "put", "key": key, "revision": index, "created": created}
    if cmd.expires_at_ms is not None:
        out["expires_at_ms"] = cmd.expires_at_ms
    out["events"] = [put_event(key, cmd.value, index)]
    return out


def _delete(store: KVStore, index: int, cmd: Delete) -> dict[str, Any]:
    key, cur = cmd.key, store.get(cmd.key)
    current_mod = 0 if cur is None else cur.mod_revision
    if cmd.if_mod_revision is not None and current_mod != cmd.if_mod_revision:
        return _precondition_failed("delete", key, cur)
    out: dict[str, Any] = {"op": "delete", "key": key, "deleted": cur is not None, "revision": index}
    if cur is not None:
        store.delete(key)
        out["events"] = [delete_event(key, index)]
    return out


def _cas(store: KVStore, index: int, cmd: Cas) -> dict[str, Any]:
    key, cur = cmd.key, store.get(cmd.key)
    current = None if cur is None else cur.document()
    ok = cur is None if cmd.expected is None else cur is not None and json_equal(current, cmd.expected)
    if not ok:
        rev = 0 if cur is None else cur.mod_revision
        return {"op": "cas", "key": key, "succeeded": False, "revision": rev, "current": current}
    store.put(key, written(cur, cmd.new_json, index, None if cur is None else cur.expires_at_ms))
    return {
        "op": "cas",
        "key": key,
        "succeeded": True,
        "revision": index,
        "current": cmd.new,
        "events": [put_event(key, cmd.new, index)],
    }


def _append(store: KVStore, index: int, cmd: Append) -> dict[str, Any]:
    key, cur = cmd.key, store.get(cmd.key)
    if cur is None:
        items: list[Any] = []
        text = f"[{cmd.value_json}]"
    else:
        doc = cur.document()
        if not isinstance(doc, list):
            return _error(
                "not_a_list", "append: the current value is not a list", op="append", key=key, revision=cur.mod_revision
            )
        items = doc
        # Splice the text rather than re-encoding the whole list: same canonical result.
        text = f"[{cmd.value_json}]" if cur.value == "[]" else f"{cur.value[:-1]},{cmd.value_json}]"
    items.append(cmd.value)
    store.put(key, written(cur, text, index, None if cur is None else cur.expires_at_ms))
    return {
        "op": "append",
        "key": key,
        "revision": index,
        "value": items,
        "events": [put_event(key, list(items), index)],
    }


def _delete_prefix(store: KVStore, index: int, cmd: DeletePrefix) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    deleted = 0
    after: str | None = None
    while True:
        rows = store.scan(cmd.prefix, after, DELETE_PREFIX_PAGE)
        for key, _ in rows:
            store.delete(key)
            deleted += 1
            if deleted <= DELETE_PREFIX_EVENTS_MAX:
                events.append(delete_event(key, index))
        if len(rows) < DELETE_PREFIX_PAGE:
            break
        after = rows[-1][0]
    out: dict[str, Any] = {"op": "delete_prefix", "prefix": cmd.prefix, "deleted": deleted, "revision": index}
    if deleted > DELETE_PREFIX_EVENTS_MAX:
        out["events"] = [delete_prefix_event(cmd.prefix, deleted, index)]
    elif events:
        out["events"] = events
    return out


def _expire(store: KVStore, index: int, cmd: Expire) -> dict[str, Any]:
    events: list[dict[str, Any]] = []
    for key in cmd.keys:
        rec = store.get(key)
        if rec is not None and rec.expires_at_ms is not None and rec.expires_at_ms <= cmd.now_ms:
            store.delete(key)
            events.append(delete_event(key, index))
    out: dict[str, Any] = {"op": "expire", "deleted": len(events), "revision": index}
    if events:
        out["events"] = events
    return out
