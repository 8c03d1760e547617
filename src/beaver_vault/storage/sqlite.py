"""``SQLiteStorage``: the storage contract on one SQLite file in WAL mode (production).

Why it is crash-safe: every mutating call is ONE ``BEGIN IMMEDIATE ... COMMIT`` transaction,
and with ``journal_mode=WAL`` + ``synchronous=FULL`` the commit fsyncs the write-ahead log
before it returns. So ``save`` (log suffix + hard state), ``apply`` (key-value rows + applied
index) and ``reset`` each survive a crash entirely or not at all, and a write is never
acknowledged before it is on disk. A failure inside a transaction rolls it back and re-raises.

The connection belongs to the thread that opened it (the node's Trio thread); sqlite3 refuses
use from any other. Calls are synchronous: a commit with fsync costs well under a millisecond
here, and the driver groups a whole Ready into one ``save`` (group commit).

Tables: ``meta`` (one row: cluster_id, applied_index), ``hard_state`` (one row: term, vote,
commit_index), ``log`` (idx, term, kind, data), ``kv`` (key, value, create_revision,
mod_revision, version, expires_at), ``requests`` (remembered idempotent writes: client, id, idx,
time_ms, result), ``auth`` (users, roles, tokens and join tokens as JSON documents: kind, name,
doc; ``kv.auth``). ``PRAGMA user_version`` holds the schema version; an older file is upgraded
in place, in one transaction, when it is opened.

Parts: ``sqlite_schema.py`` (the tables, their migrations, the PRAGMAs), ``sqlite_rows.py``
(the key-value, request and auth rows; the ``KVStore`` of ``apply``), ``sqlite_snapshot.py``
(reading and installing snapshots). This module keeps the transactions and the Raft log.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from beaver_vault.errors import InvariantViolation
from beaver_vault.kv.state import KeyRecord, KVStore
from beaver_vault.raft.messages import Entry, EntryKind, HardState
from beaver_vault.storage import sqlite_rows as rows
from beaver_vault.storage.base import (
    PersistentState,
    Storage,
    StorageStatus,
    check_apply,
    check_save,
)
from beaver_vault.storage.disk_errors import translate
from beaver_vault.storage.log_gc import GcStats, LogCollector
from beaver_vault.storage.sqlite_rows import prefix_end
from beaver_vault.storage.sqlite_schema import SCHEMA_VERSION, SNAPSHOT_SCHEMA, configure, fsync_dir, upgrade_statements
from beaver_vault.storage.sqlite_snapshot import open_snapshot, replace_state_from_staging, state_tables
from beaver_vault.storage.timings import StorageTimings

# Names other modules and the tests import from here.
__all__ = ["SCHEMA_VERSION", "SQLiteStorage", "prefix_end"]

R = TypeVar("R")

_UPSERT_HARD_STATE = (
    "INSERT INTO hard_state (id, term, vote, commit_index) VALUES (0, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET term = excluded.term, vote = excluded.vote, commit_index = excluded.commit_index"
)


WAL_AUTOCHECKPOINT_PAGES = 1000  # SQLite's default: a commit that grows the WAL past it checkpoints


class SQLiteStorage:
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000, any_thread: bool = False) -> None:
        """``any_thread``: the connection may be used from a thread other than the one that
        opened it, one thread at a time (the storage worker's, whose idle thread lends it to
        the event loop for a small apply: ``node/storage_thread.py``)."""
        self.path = os.fspath(path)
        self._request_counts = rows.RequestCounts()  # kept by apply; forgotten on any other change
        created = not os.path.exists(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=not any_thread)
        try:
            configure(self._db, self.path, busy_timeout_ms)
            self._create_schema()
            if created:
                fsync_dir(os.path.dirname(os.path.abspath(self.path)))
            self._db.executescript(SNAPSHOT_SCHEMA)
            cluster_id, applied = self._db.execute("SELECT cluster_id, applied_index FROM meta WHERE id = 0").fetchone()
            self._cluster_id: str | None = cluster_id
            self._applied: int = applied
            self._snap_index: int = self._db.execute("SELECT idx FROM snapshot_meta WHERE id = 0").fetchone()[0]
            last = self._db.execute("SELECT coalesce(max(idx), 0) FROM log").fetchone()[0]
            self._last_index: int = max(last, self._snap_index)
            # Bytes of entry data in the log after the snapshot (compaction triggers on it too).
            self._log_bytes: int = self._db.execute(
                "SELECT coalesce(sum(length(data)), 0) FROM log WHERE idx > ?", (self._snap_index,)
            ).fetchone()[0]
        except BaseException:
            self._db.close()
            raise
        self._saves = self._entries_saved = self._applies = self._entries_applied = 0
        self.timings = StorageTimings()  # fsync, apply and compaction durations (/metrics)
        # Rows made obsolete by compaction are deleted later, in small batches (log_gc.py).
        self._gc = LogCollector(self._db, timing=self.timings.compaction)

    def _create_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        statements = upgrade_statements(version, self.path)
        if statements:
            with self._transaction():
                for stmt in statements:
                    self._db.execute(stmt)

    @contextmanager
    def _transaction(self, what: str = "a storage write") -> Iterator[None]:
        """One ``BEGIN IMMEDIATE ... COMMIT``. A full disk or an I/O error becomes
        ``StorageFailure`` (``disk_errors.py``) after the rollback; anything else is re-raised."""
        db = self._db
        committing = False
        try:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield
                committing = True
                db.execute("COMMIT")
            except BaseException:
                self._request_counts.forget()
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass  # the connection rolls back by itself when it cannot (SQLITE_FULL)
                raise
        except (sqlite3.Error, OSError) as e:
            failure = translate(e, committing=committing, what=what)
            if failure is None:
                raise
            raise failure from e

    @contextmanager
    def lent(self) -> Iterator[None]:
        """Used for a moment by a thread other than its own (the storage worker lends its
        connection to the event loop for a small apply, ``node/storage_thread.py``): no
        automatic WAL checkpoint meanwhile. A checkpoint writes pages into the database file
        and fsyncs it; the worker's next commit on its own thread does it instead."""
        self._db.execute("PRAGMA wal_autocheckpoint = 0")
        try:
            yield
        finally:
            self._db.execute(f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")

    # ------------------------------------------------------------------ the Storage protocol

    def load(self) -> PersistentState:
        db = self._db
        cluster_id, applied = db.execute("SELECT cluster_id, applied_index FROM meta WHERE id = 0").fetchone()
        term, vote, commit = db.execute("SELECT term, vote, commit_index FROM hard_state WHERE id = 0").fetchone()
        snap_index, snap_term, snap_members = db.execute(
            "SELECT idx, term, membership FROM snapshot_meta WHERE id = 0"
        ).fetchone()
        # Rows at or below the snapshot index may still wait for the log collector: skip them.
        entries = tuple(
            Entry(term=t, index=i, kind=EntryKind(k), data=bytes(d))
            for i, t, k, d in db.execute("SELECT idx, term, kind, data FROM log WHERE idx > ? ORDER BY idx", (snap_index,))
        )
        for n, e in enumerate(entries, start=snap_index + 1):
            if e.index != n:
                raise InvariantViolation(f"{self.path}: log is not consecutive from {snap_index + 1} (found {e.index} at {n})")
        return PersistentState(
            cluster_id, HardState(term, vote, commit), entries, applied, snap_index, snap_term, bytes(snap_members)
        )

    def save(self, hard_state: HardState | None, entries: Sequence[Entry]) -> None:
        check_save(self._last_index, entries, self._snap_index + 1)
        if hard_state is None and not entries:
            return
        db = self._db
        started = time.perf_counter()
        removed = 0
        with self._transaction("appending to the log"):
            if entries:
                first = entries[0].index
                if first <= self._last_index:
                    removed = db.execute(
                        "SELECT coalesce(sum(length(data)), 0) FROM log WHERE idx >= ?", (first,)
                    ).fetchone()[0]
                    db.execute("DELETE FROM log WHERE idx >= ?", (first,))
                db.executemany(
                    "INSERT INTO log (idx, term, kind, data) VALUES (?, ?, ?, ?)",
                    [(e.index, e.term, int(e.kind), e.data) for e in entries],
                )
            if hard_state is not None:
                db.execute(_UPSERT_HARD_STATE, (hard_state.term, hard_state.vote, hard_state.commit))
        self.timings.fsync.observe(time.perf_counter() - started)
        if entries:
            self._last_index = entries[-1].index
            self._log_bytes += sum(len(e.data) for e in entries) - int(removed)
        self._saves += 1
        self._entries_saved += len(entries)

    def entries(self, lo: int, hi: int, max_bytes: int) -> list[Entry]:
        # Rows at or below the snapshot index may still wait for the log collector: never entries.
        rows = self._db.execute(
            "SELECT idx, term, kind, data FROM log WHERE idx >= ? AND idx < ? "
            "AND idx > (SELECT idx FROM snapshot_meta WHERE id = 0) ORDER BY idx",
            (lo, hi),
        )
        out: list[Entry] = []
        size = 0
        for i, t, k, d in rows:
            e = Entry(term=t, index=i, kind=EntryKind(k), data=bytes(d))
            size += e.size_bytes()
            if out and size > max_bytes:
                break
            out.append(e)
        return out

    def reset(self, cluster_id: str | None) -> None:
        db = self._db
        with self._transaction("resetting the storage"):
            db.execute("DELETE FROM log")
            for table in state_tables(self._db):
                db.execute(f'DELETE FROM "{table}"')
            db.execute("UPDATE meta SET cluster_id = ?, applied_index = 0 WHERE id = 0", (cluster_id,))
            db.execute(_UPSERT_HARD_STATE, (0, None, 0))
            db.execute("UPDATE snapshot_meta SET idx = 0, term = 0, membership = x'' WHERE id = 0")
            db.execute("DELETE FROM snapshot_staging")
        self._request_counts.forget()
        self._cluster_id, self._applied, self._last_index, self._snap_index = cluster_id, 0, 0, 0
        self._log_bytes = 0

    def apply(self, entries: Sequence[Entry], fn: Callable[[KVStore, Entry], R]) -> list[R]:
        check_apply(self._applied, self._last_index, entries)
        if not entries:
            return []
        store = rows.TxnKV(self._db, self._request_counts)
        last = entries[-1].index
        # The applied state need not be fsynced: it is rebuilt from the durable log, and the
        # applied index commits in the same transaction, so a power loss drops whole batches
        # (re-applied on restart), never part of one. The next FULL commit syncs it anyway.
        started = time.perf_counter()
        self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._transaction("applying committed entries"):
                results = [fn(store, e) for e in entries]
                self._db.execute("UPDATE meta SET applied_index = ? WHERE id = 0", (last,))
        finally:
            self._db.execute("PRAGMA synchronous = FULL")
        self.timings.apply.observe(time.perf_counter() - started)
        self._applied = last
        self._applies += 1
        self._entries_applied += len(entries)
        return results

    def get(self, key: str) -> KeyRecord | None:
        return rows.get_record(self._db, key)

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return rows.scan_records(self._db, prefix, after, limit)

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        return rows.expired_keys(self._db, now_ms, limit)

    def auth_get(self, kind: str, name: str) -> str | None:
        return rows.auth_doc(self._db, kind, name)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return rows.auth_docs(self._db, kind)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ snapshots and compaction

    def compact(self, index: int, term: int, membership: bytes) -> None:
        if index <= self._snap_index:
            return
        if index > self._applied:
            raise InvariantViolation(f"compact at {index} beyond the applied index {self._applied}")
        # Only the snapshot position, durably: the rows it makes obsolete are skipped by every
        # log read from now on and deleted later in small batches (collect_log_garbage).
        started = time.perf_counter()
        freed = self._db.execute(
            "SELECT coalesce(sum(length(data)), 0) FROM log WHERE idx > ? AND idx <= ?", (self._snap_index, index)
        ).fetchone()[0]
        with self._transaction("recording a compaction"):
            self._db.execute(
                "UPDATE snapshot_meta SET idx = ?, term = ?, membership = ? WHERE id = 0", (index, term, membership)
            )
        self._snap_index = index
        self._log_bytes = max(0, self._log_bytes - int(freed))
        self.timings.compaction.observe(time.perf_counter() - started)

    def probe_write(self) -> None:
        """One tiny durable write (rewrites the meta row): raises ``StorageFailure`` while the
        disk still refuses writes (node/disk_guard.py retries with it)."""
        with self._transaction("probing the disk"):
            self._db.execute("UPDATE meta SET cluster_id = cluster_id WHERE id = 0")

    def log_bytes(self) -> int:
        """Bytes of entry data in the log after the snapshot position (cheap: kept up to date)."""
        return self._log_bytes

    def collect_log_garbage(self) -> int:
        """Delete one small batch of log rows made obsolete by compaction (log_gc.py); the rows
        deleted (0: nothing left, or the batch failed for lack of space and will be retried)."""
        return self._gc.step(self._snap_index)

    def log_gc_stats(self) -> GcStats:
        return self._gc.stats

    def snapshot_reader(self, chunk_bytes: int) -> tuple[int, Iterator[bytes]]:
        return open_snapshot(self.path, state_tables(self._db), chunk_bytes)

    def install_begin(self, index: int) -> None:
        with self._transaction("staging a snapshot"):
            self._db.execute("DELETE FROM snapshot_staging")

    def install_chunk(self, seq: int, data: bytes) -> None:
        # Staged chunks need not be durable: a crash before install_finish discards them.
        self._db.execute("PRAGMA synchronous = NORMAL")
        try:
            with self._transaction("staging a snapshot"):
                self._db.execute("INSERT OR REPLACE INTO snapshot_staging (seq, data) VALUES (?, ?)", (seq, data))
        finally:
            self._db.execute("PRAGMA synchronous = FULL")

    def install_finish(self, index: int, term: int, membership: bytes) -> None:
        db = self._db
        tables = set(state_tables(self._db))
        with self._transaction("installing a snapshot"):
            replace_state_from_staging(db, tables)
            db.execute("UPDATE meta SET applied_index = ? WHERE id = 0", (index,))
            db.execute("DELETE FROM log")
            db.execute(
                "UPDATE snapshot_meta SET idx = ?, term = ?, membership = ? WHERE id = 0", (index, term, membership)
            )
            db.execute("DELETE FROM snapshot_staging")
        self._request_counts.forget()
        self._applied = self._snap_index = self._last_index = index
        self._log_bytes = 0

    # ------------------------------------------------------------------ extras

    def status(self) -> StorageStatus:
        return StorageStatus(
            self._cluster_id,
            self._last_index,
            self._applied,
            self._saves,
            self._entries_saved,
            self._applies,
            self._entries_applied,
        )

    def state_bytes(self) -> int:
        """About how big a snapshot of this node is: the database's used pages (an upper bound:
        the log is in it too). Cheap: no table is scanned."""
        page_size = self._db.execute("PRAGMA page_size").fetchone()[0]
        pages = self._db.execute("PRAGMA page_count").fetchone()[0]
        free = self._db.execute("PRAGMA freelist_count").fetchone()[0]
        return int(page_size) * max(0, int(pages) - int(free))

    def items(self) -> list[tuple[str, KeyRecord]]:
        """The whole applied key-value state, in key order (to compare nodes; tests)."""
        return rows.all_records(self._db)



def _conforms(s: SQLiteStorage) -> Storage:
    return s  # mypy checks that SQLiteStorage satisfies the Storage protocol
