"""``MemoryStorage``: the storage contract held in memory (unit tests, the simulator's base).

Every call is "durable" the moment it returns. The simulator models unsynced writes and
crashes on top of it: subclass it (buffer ``save``/``apply`` until a simulated fsync), or keep
a ``clone()`` taken at the last sync point and restart a crashed node from that copy.
No trio, sqlite3, time or os here: the simulator must stay deterministic.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

from beaver_vault.errors import InvariantViolation
from beaver_vault.kv.memory import MemoryKV, UndoKV
from beaver_vault.kv.state import KeyRecord, KVStore
from beaver_vault.raft.messages import Entry, HardState
from beaver_vault.storage.base import PersistentState, Storage, StorageStatus, check_apply, check_save, take_bytes

R = TypeVar("R")


class MemoryStorage:
    def __init__(self, cluster_id: str | None = None) -> None:
        self.cluster_id = cluster_id
        self.hard_state = HardState()
        self.log: list[Entry] = []  # log[i].index == snapshot_index + i + 1
        self.snapshot_index = 0
        self.snapshot_term = 0
        self.snapshot_membership = b""
        self.staged: list[bytes] = []  # a snapshot being installed (not durable until finished)
        self.kv = MemoryKV()
        self.applied_index = 0
        self.closed = False
        self._saves = self._entries_saved = self._applies = self._entries_applied = 0

    # ------------------------------------------------------------------ the Storage protocol

    def load(self) -> PersistentState:
        return PersistentState(
            self.cluster_id,
            self.hard_state,
            tuple(self.log),
            self.applied_index,
            self.snapshot_index,
            self.snapshot_term,
            self.snapshot_membership,
        )

    @property
    def last_index(self) -> int:
        return self.snapshot_index + len(self.log)

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        check_save(self.last_index, entries, self.snapshot_index + 1)
        if entries:
            del self.log[entries[0].index - 1 - self.snapshot_index :]
            self.log.extend(entries)
        if hard_state is not None:
            self.hard_state = hard_state
        self._saves += 1
        self._entries_saved += len(entries)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        first = self.snapshot_index + 1
        lo = max(lo, first)
        return take_bytes(self.log[lo - first : max(hi - first, 0)], max_bytes) if hi > lo else []

    def reset(self, cluster_id: str | None) -> None:
        self.cluster_id = cluster_id
        self.hard_state = HardState()
        self.log = []
        self.kv = MemoryKV()
        self.applied_index = 0
        self.snapshot_index = self.snapshot_term = 0
        self.snapshot_membership = b""
        self.staged = []

    def apply(self, entries: Sequence[Entry], fn: Callable[[KVStore, Entry], R]) -> list[R]:
        check_apply(self.applied_index, self.last_index, entries)
        view = UndoKV(self.kv)  # journals requests too
        try:
            results = [fn(view, e) for e in entries]
        except BaseException:
            view.rollback()
            raise
        if entries:
            self.applied_index = entries[-1].index
        self._applies += 1
        self._entries_applied += len(entries)
        return results

    def get(self, key: str) -> KeyRecord | None:
        return self.kv.get(key)

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return self.kv.scan(prefix, after, limit)

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        return self.kv.expired_keys(now_ms, limit)

    def auth_get(self, kind: str, name: str) -> str | None:
        return self.kv.auth_get(kind, name)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return self.kv.auth_scan(kind)

    def close(self) -> None:
        self.closed = True

    # ------------------------------------------------------------------ snapshots and compaction

    def compact(self, index: int, term: int, membership: bytes) -> None:
        if index <= self.snapshot_index:
            return
        if index > self.applied_index:
            raise InvariantViolation(f"compact at {index} beyond the applied index {self.applied_index}")
        del self.log[: index - self.snapshot_index]
        self.snapshot_index, self.snapshot_term, self.snapshot_membership = index, term, membership

    def snapshot_reader(self, chunk_bytes: int) -> tuple[int, Iterator[bytes]]:
        # The state machine copied now (records are immutable: copying containers suffices),
        # serialised with pickle (in-process only: simulator and tests), cut into chunks.
        data = pickle.dumps(self.kv.copy(), protocol=pickle.HIGHEST_PROTOCOL)
        step = max(1, chunk_bytes)
        return self.applied_index, iter([data[i : i + step] for i in range(0, len(data), step)] or [b""])

    def install_begin(self, index: int) -> None:
        self.staged = []

    def install_chunk(self, seq: int, data: bytes) -> None:
        if seq != len(self.staged):
            raise InvariantViolation(f"snapshot chunk {seq} out of order (have {len(self.staged)})")
        self.staged.append(data)

    def install_finish(self, index: int, term: int, membership: bytes) -> None:
        kv = pickle.loads(b"".join(self.staged))
        if not isinstance(kv, MemoryKV):
            raise InvariantViolation("snapshot does not hold a key-value state")
        self.kv = kv
        self.applied_index = index
        self.log = []
        self.snapshot_index, self.snapshot_term, self.snapshot_membership = index, term, membership
        self.staged = []

    # ------------------------------------------------------------------ extras

    def status(self) -> StorageStatus:
        return StorageStatus(
            self.cluster_id,
            self.last_index,
            self.applied_index,
            self._saves,
            self._entries_saved,
            self._applies,
            self._entries_applied,
        )

    def state_bytes(self) -> int:
        """About how big a snapshot of this state is (keys and values as text)."""
        return sum(len(k) + len(r.value) + 32 for k, r in self.kv.items())

    def items(self) -> list[tuple[str, KeyRecord]]:
        """The whole applied key-value state, in key order (to compare nodes)."""
        return self.kv.items()

    def clone(self) -> MemoryStorage:
        """A plain ``MemoryStorage`` holding an independent copy of everything durable (entries
        and records are immutable, so copying the containers is a deep copy). Counters restart."""
        other = MemoryStorage(self.cluster_id)
        other.hard_state = self.hard_state
        other.log = list(self.log)
        other.kv = self.kv.copy()
        other.applied_index = self.applied_index
        other.snapshot_index, other.snapshot_term = self.snapshot_index, self.snapshot_term
        other.snapshot_membership = self.snapshot_membership
        return other


def _conforms(s: MemoryStorage) -> Storage:
    return s  # mypy checks that MemoryStorage satisfies the Storage protocol
