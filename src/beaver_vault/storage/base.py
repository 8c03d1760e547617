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

Broken invariants (a gap in the log, an apply batch that does not continue the applied index)
raise ``beaver_vault.errors.InvariantViolation`` before anything is written.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from beaver_vault.errors import InvariantViolation
from beaver_vault.kv.state import KeyRecord, KVStore
from beaver_vault.raft.messages import Entry, HardState

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class PersistentState:
    cluster_id: str | None
    hard_state: HardState
    entries: tuple[Entry, ...]  # the stored log, consecutive, from snapshot_index + 1
    applied_index: int
    snapshot_index: int = 0  # the log was compacted up to here (0: never)
    snapshot_term: int = 0
    snapshot_membership: bytes = b""  # Membership.encode() in force at snapshot_index


class Storage(Protocol):
    def load(self) -> PersistentState: ...

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        """Atomically and durably: if ``entries`` is not empty, delete every log entry with index
        >= entries[0].index and append ``entries``; if ``hard_state`` is given, store it."""
        ...

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        """Stored log entries with ``lo <= index < hi``, in order, stopping once ``max_bytes`` of
        ``Entry.size_bytes()`` are reached (at least one entry if any); fewer (or none) if the
        log does not hold them (compacted, or not written)."""
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

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        """Read the applied key-value state (outside any apply): keys starting with ``prefix``,
        greater than ``after`` if given, in key order, at most ``limit`` (>= 0) of them."""
        ...

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        """Read the applied state (outside any apply): keys whose ``expires_at_ms <= now_ms``,
        soonest expiry first (ties by key), at most ``limit`` (>= 0). The leader proposes
        ``kv.commands.expire(keys, now_ms)`` for them."""
        ...

    def auth_get(self, kind: str, name: str) -> str | None:
        """Read one auth record (``kv.auth``) of the applied state (outside any apply)."""
        ...

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        """Every (name, doc) auth record of ``kind`` in the applied state, by name."""
        ...

    def close(self) -> None: ...

    # -- snapshots and compaction ------------------------------------------------------------

    def compact(self, index: int, term: int, membership: bytes) -> None:
        """Durably forget log entries up to ``index`` (<= applied index), recording the
        snapshot position (index, term, configuration) that replaces them."""
        ...

    def snapshot_reader(self, chunk_bytes: int) -> tuple[int, Iterator[bytes]]:
        """A consistent copy of the state machine at the current applied index: (that index,
        chunks of at most about ``chunk_bytes``). Writes may go on while it is read."""
        ...

    def install_begin(self, index: int) -> None:
        """Start staging a snapshot at ``index`` (discarding any half-staged one)."""
        ...

    def install_chunk(self, seq: int, data: bytes) -> None: ...

    def install_finish(self, index: int, term: int, membership: bytes) -> None:
        """Atomically and durably: replace the state machine by the staged snapshot, set the
        applied index to ``index``, drop the whole log, record the snapshot position."""
        ...


@dataclass(frozen=True, slots=True)
class StorageStatus:
    """Counters and ranges for ``/api/v1/status``, the UI and the simulator trace (optional:
    the implementations here offer ``status()``, the ``Storage`` protocol does not require it)."""

    cluster_id: str | None
    last_index: int
    applied_index: int
    saves: int = 0
    entries_saved: int = 0
    applies: int = 0
    entries_applied: int = 0


def check_save(last_index: int, entries: Sequence[Entry], min_first: int = 1) -> None:
    """The log stays consecutive (from index 1, or from just after the snapshot): a batch is
    consecutive and starts at most one past the current end (at or before it: a conflicting
    suffix is replaced), never inside the compacted prefix."""
    if not entries:
        return
    first = entries[0].index
    if not min_first <= first <= last_index + 1:
        raise InvariantViolation(f"save: entries start at {first}, log ends at {last_index}")
    for prev, e in zip(entries, entries[1:], strict=False):
        if e.index != prev.index + 1:
            raise InvariantViolation(f"save: entries not consecutive ({prev.index} then {e.index})")


def take_bytes(entries: Iterable[Entry], max_bytes: int) -> list[Entry]:
    """The first of ``entries`` up to ``max_bytes`` of ``size_bytes()`` (at least one)."""
    out: list[Entry] = []
    size = 0
    for e in entries:
        size += e.size_bytes()
        if out and size > max_bytes:
            break
        out.append(e)
    return out


def check_apply(applied_index: int, last_index: int, entries: Sequence[Entry]) -> None:
    """An apply batch continues the applied index exactly and only covers stored entries."""
    expected = applied_index + 1
    for e in entries:
        if e.index != expected:
            raise InvariantViolation(f"apply: got entry {e.index}, expected {expected}")
        expected += 1
    if entries and entries[-1].index > last_index:
        raise InvariantViolation(f"apply: entry {entries[-1].index} is beyond the stored log ({last_index})")


# Tables that make up the state machine are every table but these (SQLite) — so a snapshot
# carries whatever the state machine keeps (key-value rows, request ids, ...).
RAFT_TABLES = frozenset({"meta", "hard_state", "log", "snapshot_meta", "snapshot_staging"})
