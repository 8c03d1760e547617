"""The simulated disk: a ``Storage`` with fsync semantics, crash loss and planted lies.

Theory of operation. ``Storage.save``/``reset``/``apply`` are durable when they return (the
contract in ``storage/base.py``), so an honest disk is a ``MemoryStorage`` that survives the
node's crash unchanged; what is modelled is *time*: each sync costs latency (sometimes a slow
one), and the node's continuation (the messages it sends after persisting, its next inputs)
is delayed by that much (see ``world.SimNode.sync_delay_ms``). A crash that hits before a
save returns loses that save; one that hits after keeps it. Crash points are checked on the
way in and out of every call, so the world can kill a node between any two effects.

``lying`` (the planted ``ack-before-fsync`` bug) returns from ``save``/``apply`` before the
data is durable: writes land in ``live`` and reach ``durable`` only when a lazy flush runs
later; a crash in between rolls the node back to ``durable``. ``forget_vote`` (planted bug)
persists the hard state without its vote.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import Protocol, TypeVar

from beaver_vault.kv.state import KeyRecord, KVStore
from beaver_vault.raft.messages import Entry, HardState
from beaver_vault.storage.base import PersistentState
from beaver_vault.storage.memory import MemoryStorage

R = TypeVar("R")


class DiskHooks(Protocol):
    """What the disk asks of its node (implemented by ``world.SimNode``)."""

    def crash_point(self, where: str) -> None: ...
    def sync(self) -> None: ...
    def saved(self, entries: Sequence[Entry]) -> None: ...
    def applied(self, entries: Sequence[Entry], storage: MemoryStorage) -> None: ...
    def want_flush(self) -> None: ...
    def installed(self, storage: MemoryStorage) -> None: ...
    def count(self, name: str) -> None: ...


class SimDisk:
    def __init__(self, hooks: DiskHooks, *, lying: bool = False, forget_vote: bool = False) -> None:
        self.hooks = hooks
        self.lying = lying
        self.forget_vote = forget_vote
        self.live = MemoryStorage()
        # Honest: one object, everything returned is durable. Lying: a separate durable copy.
        self.durable = MemoryStorage() if lying else self.live
        self.dirty = False

    # ------------------------------------------------------------------ Storage protocol

    def load(self) -> PersistentState:
        return self.live.load()

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self.hooks.crash_point("before-save")
        self.hooks.saved(entries)
        if self.forget_vote and hard_state is not None and hard_state.vote is not None:
            hard_state = HardState(hard_state.term, None, hard_state.commit)  # PLANTED BUG
        self.live.save(hard_state, entries)
        self._written()
        self.hooks.crash_point("after-save")

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        return self.live.entries(lo, hi, max_bytes)

    def reset(self, cluster_id: str | None) -> None:
        self.hooks.crash_point("before-save")
        self.live.reset(cluster_id)
        if self.lying:
            self.durable = self.live.clone()  # adoption stays honest; the lie is about appends
        self.hooks.sync()
        self.hooks.crash_point("after-save")

    def apply(self, entries: Sequence[Entry], fn: Callable[[KVStore, Entry], R]) -> list[R]:
        self.hooks.crash_point("before-apply")
        results = self.live.apply(entries, fn)
        self._written()
        self.hooks.applied(entries, self.live)
        self.hooks.crash_point("after-apply")
        return results

    def get(self, key: str) -> KeyRecord | None:
        return self.live.get(key)

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return self.live.scan(prefix, after, limit)

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        return self.live.expired_keys(now_ms, limit)

    def auth_get(self, kind: str, name: str) -> str | None:
        return self.live.auth_get(kind, name)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return self.live.auth_scan(kind)

    # Compaction and snapshot installation: durable on return like save (crash points around).

    def compact(self, index: int, term: int, membership: bytes) -> None:
        self.hooks.crash_point("before-save")
        if index > self.live.snapshot_index:
            self.hooks.count("compactions")
        self.live.compact(index, term, membership)
        self._written()
        self.hooks.crash_point("after-save")

    def snapshot_reader(self, chunk_bytes: int) -> tuple[int, Iterator[bytes]]:
        self.hooks.count("snapshots_sent")
        return self.live.snapshot_reader(chunk_bytes)

    def install_begin(self, index: int) -> None:
        self.live.install_begin(index)

    def install_chunk(self, seq: int, data: bytes) -> None:
        # Between two chunks of an install: the staged part is not durable state, so a crash
        # here must leave the node restartable from its old snapshot + log.
        self.hooks.crash_point("install-chunk")
        self.live.install_chunk(seq, data)

    def install_finish(self, index: int, term: int, membership: bytes) -> None:
        self.hooks.crash_point("before-save")
        self.hooks.crash_point("install-chunk")
        self.live.install_finish(index, term, membership)
        self._written()
        self.hooks.count("snapshots_installed")
        self.hooks.installed(self.live)
        self.hooks.crash_point("after-save")
        # Installed and durable, but the core has not restored from it yet (the driver's next
        # step): a restart must pick the snapshot up from the disk alone.
        self.hooks.crash_point("after-install")

    def close(self) -> None:
        pass  # a simulated crash must not mark the data closed: the next incarnation reopens it

    # ------------------------------------------------------------------ simulation

    def _written(self) -> None:
        if self.lying:
            # Return at once; durability comes with a later flush (the bug being planted).
            self.dirty = True
            self.hooks.want_flush()
        else:
            self.hooks.sync()

    def flush(self) -> None:
        if self.lying and self.dirty:
            self.durable = self.live.clone()
            self.dirty = False

    def crash(self) -> None:
        """Power loss: whatever was not durable is gone."""
        if self.lying and self.dirty:
            self.live = self.durable.clone()
            self.dirty = False

