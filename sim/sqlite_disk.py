"""The production ``SQLiteStorage`` under the simulated disk's faults (``--storage sqlite``).

Why: the memory storage is what most seeds run on (fast), but the code that holds the data in
production is ``beaver_vault.storage.sqlite``. One seed in four (``params.drawn_storage``; force
it with ``--storage sqlite``) runs every node of the world on a real SQLite file in WAL mode, in
a per-run directory on tmpfs (``/dev/shm`` when there is one), deleted when the run ends. All
nodes of one world use the same storage: snapshots travel in the storage's own format.

Layering: the simulator never imports ``sqlite3``; this module imports the production storage
module (which does), and subclasses it only to turn SQLite's automatic checkpoints off and to
checkpoint on request. Every Storage method is the production one, unchanged.

The fsync boundary is held here, in simulated time, at the level of the file SQLite writes:

* In WAL mode a commit appends frames to ``<db>-wal``; the database file itself changes only at
  a checkpoint. With automatic checkpoints off, the WAL only grows between two checkpoints
  that this module runs, so "the disk as it was at the last fsync" is exactly: the database
  file as it was at the last checkpoint (``image``, kept in memory) plus the first ``wal_cut``
  bytes of the WAL (a commit boundary: SQLite validates frames up to the last commit frame).
* A call is durable when the production code fsyncs it: ``save``, ``reset``, ``compact``,
  ``install_begin`` and ``install_finish`` commit with ``synchronous=FULL`` (each costs one
  simulated sync, with its latency, slow syncs included). ``apply`` and ``install_chunk`` commit
  with ``synchronous=NORMAL``: they are NOT durable until the next FULL commit syncs the WAL
  behind them, which is what SQLite does, so a crash in between loses them (the node re-applies
  from its log; staged chunks are gone).
* The planted ``ack-before-fsync`` (``lying``) disk makes nothing durable until a later lazy
  flush (as ``SimDisk`` does): the cut moves only then.
* A crash closes the connection, writes ``image`` back as the database file and the WAL cut
  back as the WAL, drops the shared-memory index and reopens the file: SQLite's own recovery
  then rebuilds the state, as after a power loss. The crash point "before-apply" fires INSIDE
  the apply transaction (at the last entry of the batch), so a crash there also exercises the
  rollback of a half-applied batch.

The WAL is checkpointed (TRUNCATE) at a durable point, when it has grown past
``CHECKPOINT_BYTES`` and no snapshot reader holds a read transaction; the database file is read
back as the new ``image`` then.
"""

from __future__ import annotations

import inspect
import os
import shutil
import tempfile
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import TYPE_CHECKING, TypeVar, cast

from beaver_vault.kv.state import KeyRecord, KVStore
from beaver_vault.raft.messages import Entry, HardState
from beaver_vault.storage.base import PersistentState
from beaver_vault.storage.sqlite import SQLiteStorage

if TYPE_CHECKING:
    from sim.disk import DiskHooks

R = TypeVar("R")

CHECKPOINT_BYTES = 512 * 1024


def run_directory() -> str:
    """A fresh directory for one run's database files (tmpfs when available: fsync is free)."""
    base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    return tempfile.mkdtemp(prefix="beaver-vault-sim-", dir=base)


def remove_directory(path: str) -> None:
    shutil.rmtree(path, ignore_errors=True)


class _SimSQLite(SQLiteStorage):
    """The production storage with SQLite's automatic checkpoints off (this module decides
    when the database file changes) and no busy wait (one thread: nobody else writes)."""

    def __init__(self, path: str) -> None:
        super().__init__(path, busy_timeout_ms=0)
        self._db.execute("PRAGMA wal_autocheckpoint = 0")

    def checkpoint(self) -> bool:
        """Fold the WAL into the database file and truncate it; False if a reader prevented it."""
        busy, _, _ = self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        return int(busy) == 0


class StateView:
    """What the world's invariants read from a disk (the attributes of ``MemoryStorage`` they
    use), answered from the SQLite file."""

    def __init__(self, store: SQLiteStorage) -> None:
        self._store = store
        self._state: PersistentState | None = None

    def _load(self) -> PersistentState:
        if self._state is None:
            self._state = self._store.load()
        return self._state

    @property
    def applied_index(self) -> int:
        return self._store.status().applied_index

    @property
    def snapshot_index(self) -> int:
        return self._load().snapshot_index

    @property
    def snapshot_membership(self) -> bytes:
        return self._load().snapshot_membership

    @property
    def log(self) -> list[Entry]:
        return list(self._load().entries)

    def items(self) -> list[tuple[str, KeyRecord]]:
        return self._store.items()


class SqliteDisk:
    """Same surface as ``sim.disk.SimDisk`` (the Storage protocol plus ``flush``/``crash``)."""

    def __init__(self, hooks: DiskHooks, path: str, *, lying: bool = False, forget_vote: bool = False) -> None:
        self.hooks = hooks
        self.path = path
        self.lying = lying
        self.forget_vote = forget_vote
        self.dirty = False
        self.store = _SimSQLite(path)
        self.readers: list[Generator[bytes, None, None]] = []
        self.image = b""
        self.wal_cut = 0
        self.durable_points = 0
        self.lost_on_crash = 0  # crashes that rolled the files back past written data
        self._durable(force_checkpoint=True)

    @property
    def live(self) -> StateView:
        return StateView(self.store)

    # ------------------------------------------------------------------ the fsync boundary

    def _wal(self) -> str:
        return self.path + "-wal"

    def _wal_size(self) -> int:
        try:
            return os.path.getsize(self._wal())
        except FileNotFoundError:
            return 0

    def _durable(self, force_checkpoint: bool = False) -> None:
        """Everything written so far is on disk now."""
        self.durable_points += 1
        self.readers = [g for g in self.readers if inspect.getgeneratorstate(g) != inspect.GEN_CLOSED]
        size = self._wal_size()
        if (force_checkpoint or size > CHECKPOINT_BYTES) and not self.readers and self.store.checkpoint():
            with open(self.path, "rb") as fh:
                self.image = fh.read()
            size = self._wal_size()
        self.wal_cut = size

    def _full(self) -> None:
        """After a commit the production code fsyncs (synchronous=FULL)."""
        if self.lying:
            self.dirty = True
            self.hooks.want_flush()
        else:
            self.hooks.sync()
            self._durable()

    def _normal(self) -> None:
        """After a commit with synchronous=NORMAL: durable only behind a later FULL commit."""
        if self.lying:
            self.dirty = True
            self.hooks.want_flush()

    def flush(self) -> None:
        if self.lying and self.dirty:
            self.dirty = False
            self._durable()

    def crash(self) -> None:
        """Power loss: the files go back to the last durable point, then SQLite recovers."""
        for g in self.readers:
            g.close()
        self.readers = []
        size = self._wal_size()
        wal = b""
        if self.wal_cut:
            with open(self._wal(), "rb") as fh:
                wal = fh.read(self.wal_cut)
        with open(self.path, "rb") as fh:
            current = fh.read()
        if size != self.wal_cut or current != self.image:
            self.lost_on_crash += 1
        self.store.close()  # (a clean close may checkpoint: the files are rewritten below)
        with open(self.path, "wb") as fh:
            fh.write(self.image)
        if wal:
            with open(self._wal(), "wb") as fh:
                fh.write(wal)
        else:
            _remove(self._wal())
        _remove(self.path + "-shm")
        self.dirty = False
        self.store = _SimSQLite(self.path)
        self._durable(force_checkpoint=True)

    def destroy(self) -> None:
        """The machine got a new disk: close and delete this one's files."""
        for g in self.readers:
            g.close()
        self.readers = []
        self.store.close()
        for suffix in ("", "-wal", "-shm"):
            _remove(self.path + suffix)

    # ------------------------------------------------------------------ Storage protocol

    def load(self) -> PersistentState:
        return self.store.load()

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        self.hooks.crash_point("before-save")
        self.hooks.saved(entries)
        if self.forget_vote and hard_state is not None and hard_state.vote is not None:
            hard_state = HardState(hard_state.term, None, hard_state.commit)  # PLANTED BUG
        self.store.save(hard_state, entries)
        self._full()
        self.hooks.crash_point("after-save")

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        return self.store.entries(lo, hi, max_bytes)

    def reset(self, cluster_id: str | None) -> None:
        self.hooks.crash_point("before-save")
        self.store.reset(cluster_id)
        # Adoption stays honest with a lying disk too (as in SimDisk): the lie is about appends.
        self.hooks.sync()
        self._durable()
        self.hooks.crash_point("after-save")

    def apply(self, entries: Sequence[Entry], fn: Callable[[KVStore, Entry], R]) -> list[R]:
        if not entries:
            self.hooks.crash_point("before-apply")
            return []
        last = entries[-1].index
        hooks = self.hooks

        def guarded(kv: KVStore, e: Entry) -> R:
            if e.index == last:
                # Inside the transaction, the earlier entries of the batch already written:
                # a crash here must roll the whole batch back.
                hooks.crash_point("before-apply")
            return fn(kv, e)

        results = self.store.apply(entries, guarded)
        self._normal()
        self.hooks.applied(entries, self.live)  # type: ignore[arg-type]  # a MemoryStorage-like view
        self.hooks.crash_point("after-apply")
        return results

    def get(self, key: str) -> KeyRecord | None:
        return self.store.get(key)

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return self.store.scan(prefix, after, limit)

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        return self.store.expired_keys(now_ms, limit)

    def auth_get(self, kind: str, name: str) -> str | None:
        return self.store.auth_get(kind, name)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return self.store.auth_scan(kind)

    def compact(self, index: int, term: int, membership: bytes) -> None:
        self.hooks.crash_point("before-save")
        if index > self.store.load().snapshot_index:
            self.hooks.count("compactions")
        self.store.compact(index, term, membership)
        self._full()
        self.hooks.crash_point("after-save")

    def snapshot_reader(self, chunk_bytes: int) -> tuple[int, Iterator[bytes]]:
        self.hooks.count("snapshots_sent")
        index, chunks = self.store.snapshot_reader(chunk_bytes)
        gen = cast(Generator[bytes, None, None], chunks)
        self.readers.append(gen)
        return index, gen

    def install_begin(self, index: int) -> None:
        self.store.install_begin(index)
        self._full()

    def install_chunk(self, seq: int, data: bytes) -> None:
        self.hooks.crash_point("install-chunk")
        self.store.install_chunk(seq, data)
        self._normal()

    def install_finish(self, index: int, term: int, membership: bytes) -> None:
        self.hooks.crash_point("before-save")
        self.hooks.crash_point("install-chunk")
        self.store.install_finish(index, term, membership)
        self._full()
        self.hooks.count("snapshots_installed")
        self.hooks.installed(self.live)  # type: ignore[arg-type]
        self.hooks.crash_point("after-save")
        self.hooks.crash_point("after-install")

    def close(self) -> None:
        pass  # a simulated crash must not close the data cleanly: crash() does the power loss


def _remove(path: str) -> None:
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
