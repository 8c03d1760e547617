"""The storage contract shared by the in-memory (tests, simulator) and SQLite implementations.

One storage object holds everything a node keeps on disk:

* the cluster id it belongs to (``None`` while it waits to be adopted by a join);
* the Raft hard state (term, vote, commit) and the log;
* the key-value state machine's rows and its last-applied index.

Durability rules (the driver relies on them; the contract tests check them):

* ``save`` and ``reset`` are atomic and durable (fsynced) when they return.
* ``apply`` runs the given function over the entries inside ONE transaction that also
  records the new applied index, so a crash either keeps all of a batch or none of it,
  and an entry is never applied twice.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from beaver_vault.kv.state import KVStore, KeyRecord
from beaver_vault.raft.messages import Entry, HardState

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class PersistentState:
    cluster_id: str | None
    hard_state: HardState
    entries: tuple[Entry, ...]  # the whole stored log, consecutive indices, from index 1
    applied_index: int


class Storage(Protocol):
    def load(self) -> PersistentState: ...

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Atomically and durably: if ``entries`` is not empty, delete every log entry with index
        >= entries[0].index and append ``entries``; if ``hard_state`` is given, store it."""
        ...

    def reset(self, cluster_id: str | None) -> None:
        """Atomically and durably wipe log, hard state, key-value rows and applied index, and
        set the cluster id (adoption into a cluster, or first bootstrap)."""
        ...

    def apply(self, entries: Sequence[Entry], fn: Callable[[KVStore, Entry], R]) -> list[R]:
        """In one transaction: ``fn(store, entry)`` for each entry in order, then set the applied
        index to the last entry's index. Entries must continue the applied index exactly."""
        ...

    def get(self, key: str) -> KeyRecord | None:
        """Read the applied key-value state (outside any apply)."""
        ...

    def close(self) -> None: ...
