"""Builders shared by the storage tests (test_storage_contract.py, test_storage_sqlite.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from beaver_vault.kv import commands
from beaver_vault.kv.state import KVStore, apply
from beaver_vault.raft.messages import Entry, EntryKind, HardState


def E(index: int, term: int, data: bytes = b"", kind: EntryKind = EntryKind.NORMAL) -> Entry:
    return Entry(term=term, index=index, kind=kind, data=data)


def kv_apply(store: KVStore, entry: Entry) -> dict[str, Any]:
    return apply(store, entry.index, entry.data)


def fill(s: Any, keys: list[str]) -> None:
    """Save and apply one put per key (values 1, 2, ...), at term 1."""
    s.save(HardState(1), [E(i, 1, commands.put(k, i)) for i, k in enumerate(keys, 1)])
    s.apply(s.load().entries, kv_apply)


def apply_all(s: Any, data: list[bytes], fn: Callable[[KVStore, Entry], Any] = kv_apply) -> list[Any]:
    """Save ``data`` as the entries after the applied index, then apply them; their results."""
    start = s.load().applied_index + 1
    entries = [E(i, 1, d) for i, d in enumerate(data, start)]
    s.save(HardState(1), entries)
    results: list[Any] = s.apply(entries, fn)
    return results


def in_another_thread(fn: Callable[[], None]) -> list[BaseException]:
    """Run ``fn`` on a thread of its own, wait for it; what it raised, if anything."""
    import threading

    errors: list[BaseException] = []

    def run() -> None:
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - handed back to the caller
            errors.append(e)

    t = threading.Thread(target=run)
    t.start()
    t.join()
    return errors
