"""The rows of the state machine and the store protocol they live behind (pure).

``KeyRecord`` is one key: its value as canonical JSON text, ``create_revision`` and
``mod_revision`` (Raft indices of the entries that created / last changed it), ``version``
(writes since creation) and ``expires_at_ms`` (absolute expiry in leader-stamped time, or
``None``). Expiry travels with the row, so a snapshot or a new leader knows it.

``RequestRecord`` is one remembered idempotent write: the entry index that applied it, the
leader-stamped time it arrived and the original result as canonical JSON, keyed by
(client, request id). The table is part of the store, so it travels in snapshots too.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class KeyRecord:
    value: str  # canonical JSON text of the document
    create_revision: int
    mod_revision: int
    version: int
    expires_at_ms: int | None = None

    def document(self) -> Any:
        """The stored JSON document, parsed."""
        return json.loads(self.value)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    index: int  # the entry that applied the request (orders a client's requests)
    time_ms: int  # leader-stamped arrival time (drives expiry)
    result: str  # canonical JSON of the original result (without its watch events)


class KVStore(Protocol):
    """What ``apply`` needs of a store; every call runs inside the storage's apply transaction."""

    def get(self, key: str) -> KeyRecord | None: ...
    def put(self, key: str, record: KeyRecord) -> None: ...
    def put_value(self, key: str, value_json: str, index: int, expires_at_ms: int | None) -> bool:
        """``put(key, written(get(key), value_json, index, expires_at_ms))``, in one step where
        the store can (SQLite: one upsert instead of a read and a write); True if the key was
        absent (created)."""
        ...

    def delete(self, key: str) -> None: ...
    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        """Keys starting with ``prefix``, greater than ``after`` if given, in key order
        (code point order, which is also UTF-8 byte order), at most ``limit`` (>= 0) of them."""
        ...

    def get_request(self, client: str, request_id: str) -> RequestRecord | None: ...
    def put_request(self, client: str, request_id: str, record: RequestRecord) -> None:
        """Insert (or replace) the remembered request."""
        ...

    def purge_requests(self, before_ms: int) -> int:
        """Forget every request whose ``time_ms < before_ms``; return how many."""
        ...

    def trim_requests(self, client: str, keep: int) -> int:
        """Forget the oldest (lowest ``index``) requests of ``client`` beyond the newest ``keep``;
        return how many."""
        ...

    # The auth records (users, roles, tokens, join tokens: ``kv.auth``), a table of their own.
    def auth_get(self, kind: str, name: str) -> str | None: ...
    def auth_put(self, kind: str, name: str, doc: str) -> None: ...
    def auth_delete(self, kind: str, name: str) -> None: ...
    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        """Every (name, doc) of ``kind``, ordered by name."""

    def trim_all_requests(self, keep: int) -> int:
        """Forget the oldest requests of all clients (lowest ``time_ms``, then ``index``) beyond
        about the newest ``keep`` (ties at the boundary may stay); return how many."""
        ...


def json_equal(a: Any, b: Any) -> bool:
    """JSON equality: object key order is ignored, numbers compare by value (``1 == 1.0``) but
    booleans are not numbers (``true != 1``). Python's ``==`` alone would say ``True == 1``."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    if isinstance(a, str) or a is None:
        return type(a) is type(b) and a == b
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(json_equal(v, b[k]) for k, v in a.items())
    return False


def written(cur: KeyRecord | None, value_json: str, index: int, expires_at_ms: int | None) -> KeyRecord:
    """The record after a write at ``index`` (creates it, or bumps ``mod_revision``/``version``)."""
    if cur is None:
        return KeyRecord(value_json, index, index, 1, expires_at_ms)
    return KeyRecord(value_json, cur.create_revision, index, cur.version + 1, expires_at_ms)


def put_event(key: str, value: Any, index: int) -> dict[str, Any]:
    return {"type": "put", "key": key, "value": value, "revision": index}


def delete_event(key: str, index: int) -> dict[str, Any]:
    return {"type": "delete", "key": key, "value": None, "revision": index}


def delete_prefix_event(prefix: str, deleted: int, index: int) -> dict[str, Any]:
    """ONE event for a prefix delete of many keys (``kv.state.DELETE_PREFIX_EVENTS_MAX``): every
    key starting with ``key`` (the prefix) was deleted at ``revision``; ``deleted`` says how many."""
    return {"type": "delete_prefix", "key": prefix, "value": None, "revision": index, "deleted": deleted}
