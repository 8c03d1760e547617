"""The key-value state machine (pure): ``apply(store, index, data) -> result``.

A value is any JSON document, stored as its canonical JSON text. Every key carries
``create_revision`` and ``mod_revision`` (the Raft index of the entry that created / last
modified it: the store's revision increases with every write) and ``version`` (number of
writes since creation). The store itself is injected (``KVStore``): memory for tests and the
simulator, SQLite in production; apply runs inside the storage's transaction.

``apply`` never raises for bad data: a committed entry is applied on every node, so a command
that does not decode yields ``{"error": ..., "code": "bad_command"}`` and changes nothing,
identically everywhere. Exceptions raised by the store itself (I/O) do propagate: the storage
rolls the batch back and the node stops.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Protocol

from beaver_vault.kv.commands import Append, Cas, CommandError, Delete, Put, decode


@dataclass(frozen=True, slots=True)
class KeyRecord:
    value: str  # canonical JSON text of the document
    create_revision: int
    mod_revision: int
    version: int

    def document(self) -> Any:
        """The stored JSON document, parsed."""
        return json.loads(self.value)


class KVStore(Protocol):
    def get(self, key: str) -> KeyRecord | None: ...
    def put(self, key: str, record: KeyRecord) -> None: ...
    def delete(self, key: str) -> None: ...
    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        """Keys starting with ``prefix``, greater than ``after`` if given, in key order
        (code point order, which is also UTF-8 byte order), at most ``limit`` (>= 0) of them."""
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


def _error(code: str, message: str, **extra: Any) -> dict[str, Any]:
    return {**extra, "error": message, "code": code}


def apply(store: KVStore, index: int, data: bytes) -> dict[str, Any]:
    """Apply the command ``data`` committed at log ``index``; return its result (JSON-able)."""
    try:
        cmd = decode(data)
    except CommandError as e:
        return _error("bad_command", str(e))
    except Exception as e:  # decode is meant to raise CommandError only; be safe anyway
        return _error("bad_command", f"undecodable command ({type(e).__name__})")

    key = cmd.key
    cur = store.get(key)
    match cmd:
        case Put():
            store.put(key, _written(cur, cmd.value_json, index))
            return {"op": "put", "key": key, "revision": index, "created": cur is None}
        case Delete():
            if cur is not None:
                store.delete(key)
            return {"op": "delete", "key": key, "deleted": cur is not None, "revision": index}
        case Cas():
            current = None if cur is None else cur.document()
            if cmd.expected is None:
                ok = cur is None
            else:
                ok = cur is not None and json_equal(current, cmd.expected)
            if not ok:
                rev = 0 if cur is None else cur.mod_revision
                return {"op": "cas", "key": key, "succeeded": False, "revision": rev, "current": current}
            store.put(key, _written(cur, cmd.new_json, index))
            return {"op": "cas", "key": key, "succeeded": True, "revision": index, "current": cmd.new}
        case Append():
            if cur is None:
                items: list[Any] = []
                text = f"[{cmd.value_json}]"
            else:
                doc = cur.document()
                if not isinstance(doc, list):
                    return _error(
                        "not_a_list",
                        "append: the current value is not a list",
                        op="append",
                        key=key,
                        revision=cur.mod_revision,
                    )
                items = doc
                # Splice the text rather than re-encoding the whole list: same canonical result.
                text = f"[{cmd.value_json}]" if cur.value == "[]" else f"{cur.value[:-1]},{cmd.value_json}]"
            items.append(cmd.value)
            store.put(key, _written(cur, text, index))
            return {"op": "append", "key": key, "revision": index, "value": items}


def _written(cur: KeyRecord | None, value_json: str, index: int) -> KeyRecord:
    if cur is None:
        return KeyRecord(value_json, index, index, 1)
    return KeyRecord(value_json, cur.create_revision, index, cur.version + 1)
