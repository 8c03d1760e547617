"""The key-value state machine (pure): ``apply(store, index, data) -> result``.

SKELETON: signatures are the contract; the implementation is being written.

A value is any JSON document, stored as its canonical JSON text. Every key carries
``create_revision`` and ``mod_revision`` (the Raft index of the entry that created / last
modified it: the store's revision increases with every write) and ``version`` (number of
writes since creation). The store itself is injected (``KVStore``): memory for tests and the
simulator, SQLite in production; apply runs inside the storage's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True, slots=True)
class KeyRecord:
    value: str  # canonical JSON text of the document
    create_revision: int
    mod_revision: int
    version: int


class KVStore(Protocol):
    def get(self, key: str) -> KeyRecord | None: ...
    def put(self, key: str, record: KeyRecord) -> None: ...
    def delete(self, key: str) -> None: ...
    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        """Keys starting with ``prefix``, greater than ``after`` if given, in key order."""
        ...


def apply(store: KVStore, index: int, data: bytes) -> dict[str, Any]:
    raise NotImplementedError
