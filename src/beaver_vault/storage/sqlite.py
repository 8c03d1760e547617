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
doc; ``kv.auth``). ``PRAGMA user_version`` holds the schema version; ``_MIGRATIONS`` upgrades an
older file in place, in one transaction, when it is opened.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TypeVar

from beaver_vault.errors import InvariantViolation
from beaver_vault.kv.records import RequestRecord
from beaver_vault.kv.state import KeyRecord, KVStore
from beaver_vault.raft.messages import Entry, EntryKind, HardState
from beaver_vault.storage.base import (
    RAFT_TABLES,
    PersistentState,
    Storage,
    StorageStatus,
    check_apply,
    check_save,
)
from beaver_vault.storage.disk_errors import translate
from beaver_vault.storage.log_gc import GcStats, LogCollector
from beaver_vault.storage.timings import StorageTimings

R = TypeVar("R")

SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    cluster_id TEXT,
    applied_index INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS hard_state (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    term INTEGER NOT NULL,
    vote TEXT,
    commit_index INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    idx INTEGER PRIMARY KEY,
    term INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL,
    create_revision INTEGER NOT NULL,
    mod_revision INTEGER NOT NULL,
    version INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (id, cluster_id, applied_index) VALUES (0, NULL, 0);
INSERT OR IGNORE INTO hard_state (id, term, vote, commit_index) VALUES (0, 0, NULL, 0);
"""

# Schema version N-1 -> N. Version 2: per-key expiry (indexed for the leader's expiry sweep)
# and the table of remembered idempotent requests (indexed for purge by age and trim by client).
_MIGRATIONS: dict[int, str] = {
    2: """
ALTER TABLE kv ADD COLUMN expires_at INTEGER;
CREATE INDEX kv_expires_at ON kv (expires_at, key) WHERE expires_at IS NOT NULL;
CREATE TABLE requests (
    client TEXT NOT NULL,
    id TEXT NOT NULL,
    idx INTEGER NOT NULL,
    time_ms INTEGER NOT NULL,
    result TEXT NOT NULL,
    PRIMARY KEY (client, id)
);
CREATE INDEX requests_time ON requests (time_ms);
CREATE INDEX requests_client_idx ON requests (client, idx);
""",
    # Version 3: users, roles, tokens and join tokens (kv.auth), hashed secrets only.
    3: """
CREATE TABLE auth (
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    doc TEXT NOT NULL,
    PRIMARY KEY (kind, name)
);
""",
}

_KV_COLUMNS = "value, create_revision, mod_revision, version, expires_at"
_UPSERT_KV = (
    "INSERT INTO kv (key, value, create_revision, mod_revision, version, expires_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, create_revision = excluded.create_revision, "
    "mod_revision = excluded.mod_revision, version = excluded.version, expires_at = excluded.expires_at"
)
_UPSERT_HARD_STATE = (
    "INSERT INTO hard_state (id, term, vote, commit_index) VALUES (0, ?, ?, ?) "
    "ON CONFLICT (id) DO UPDATE SET term = excluded.term, vote = excluded.vote, commit_index = excluded.commit_index"
)


def prefix_end(prefix: str) -> str | None:
    """The smallest string greater than every string that starts with ``prefix`` (None: no
    bound). SQLite's BINARY collation is UTF-8 byte order, which equals code point order."""
    chars = list(prefix)
    while chars:
        c = ord(chars[-1]) + 1
        if c <= 0x10FFFF:
            if 0xD800 <= c <= 0xDFFF:
                c = 0xE000  # surrogates cannot be stored; skip the block
            chars[-1] = chr(c)
            return "".join(chars)
        chars.pop()
    return None


def _scan(db: sqlite3.Connection, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
    if limit < 0:
        raise ValueError("limit must be >= 0")
    sql = f"SELECT key, {_KV_COLUMNS} FROM kv WHERE key >= ?"
    args: list[object] = [prefix]
    end = prefix_end(prefix)
    if end is not None:
        sql += " AND key < ?"
        args.append(end)
    if after is not None:
        sql += " AND key > ?"
        args.append(after)
    sql += " ORDER BY key LIMIT ?"
    args.append(limit)
    return [(k, KeyRecord(v, c, m, n, x)) for k, v, c, m, n, x in db.execute(sql, args)]


def _get(db: sqlite3.Connection, key: str) -> KeyRecord | None:
    row = db.execute(f"SELECT {_KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else KeyRecord(*row)


class _TxnKV:
    """The ``KVStore`` handed to ``apply``'s function: reads and writes inside the open transaction."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, key: str) -> KeyRecord | None:
        return _get(self._db, key)

    def put(self, key: str, record: KeyRecord) -> None:
        r = record
        self._db.execute(_UPSERT_KV, (key, r.value, r.create_revision, r.mod_revision, r.version, r.expires_at_ms))

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return _scan(self._db, prefix, after, limit)

    def get_request(self, client: str, request_id: str) -> RequestRecord | None:
        row = self._db.execute(
            "SELECT idx, time_ms, result FROM requests WHERE client = ? AND id = ?", (client, request_id)
        ).fetchone()
        return None if row is None else RequestRecord(*row)

    def put_request(self, client: str, request_id: str, record: RequestRecord) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO requests (client, id, idx, time_ms, result) VALUES (?, ?, ?, ?, ?)",
            (client, request_id, record.index, record.time_ms, record.result),
        )

    def purge_requests(self, before_ms: int) -> int:
        return self._db.execute("DELETE FROM requests WHERE time_ms < ?", (before_ms,)).rowcount

    def trim_requests(self, client: str, keep: int) -> int:
        # The (keep+1)-th newest idx of the client, if any, and everything older (index walk).
        return self._db.execute(
            "DELETE FROM requests WHERE client = ? AND idx <= "
            "(SELECT idx FROM requests WHERE client = ? ORDER BY idx DESC LIMIT 1 OFFSET ?)",
            (client, client, keep),
        ).rowcount

    def auth_get(self, kind: str, name: str) -> str | None:
        return _auth_get(self._db, kind, name)

    def auth_put(self, kind: str, name: str, doc: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO auth (kind, name, doc) VALUES (?, ?, ?)", (kind, name, doc))

    def auth_delete(self, kind: str, name: str) -> None:
        self._db.execute("DELETE FROM auth WHERE kind = ? AND name = ?", (kind, name))

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return _auth_scan(self._db, kind)

    def trim_all_requests(self, keep: int) -> int:
        return _trim_all_requests(self._db, keep)


def _auth_get(db: sqlite3.Connection, kind: str, name: str) -> str | None:
    row = db.execute("SELECT doc FROM auth WHERE kind = ? AND name = ?", (kind, name)).fetchone()
    return None if row is None else str(row[0])


def _auth_scan(db: sqlite3.Connection, kind: str) -> list[tuple[str, str]]:
    return [(n, d) for n, d in db.execute("SELECT name, doc FROM auth WHERE kind = ? ORDER BY name", (kind,))]


def _trim_all_requests(db: sqlite3.Connection, keep: int) -> int:
    # The (keep+1)-th newest time, if any, and everything older (a walk of the time index).
    return db.execute(
        "DELETE FROM requests WHERE time_ms <= (SELECT time_ms FROM requests ORDER BY time_ms DESC LIMIT 1 OFFSET ?)",
        (keep,),
    ).rowcount


def _expired_keys(db: sqlite3.Connection, now_ms: int, limit: int) -> list[str]:
    if limit < 0:
        raise ValueError("limit must be >= 0")
    rows = db.execute(
        "SELECT key FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, key LIMIT ?",
        (now_ms, limit),
    )
    return [k for (k,) in rows]


class SQLiteStorage:
    def __init__(self, path: str | os.PathLike[str], *, busy_timeout_ms: int = 5000) -> None:
        self.path = os.fspath(path)
        created = not os.path.exists(self.path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            self._configure(busy_timeout_ms)
            self._create_schema()
            if created:
                _fsync_dir(os.path.dirname(os.path.abspath(self.path)))
            self._db.executescript(_SNAPSHOT_SCHEMA)
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

    def _configure(self, busy_timeout_ms: int) -> None:
        db = self._db
        mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise RuntimeError(f"{self.path}: could not enable WAL (journal_mode={mode})")
        db.execute("PRAGMA synchronous = FULL")  # fsync the WAL at every commit
        db.execute("PRAGMA foreign_keys = ON")
        db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")

    def _create_schema(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > SCHEMA_VERSION:
            raise RuntimeError(f"{self.path}: schema version {version} is newer than this program ({SCHEMA_VERSION})")
        if version == SCHEMA_VERSION:
            return
        with self._transaction():
            steps = [_SCHEMA] if version == 0 else []  # 0: a new file; _SCHEMA is version 1
            steps += [_MIGRATIONS[v] for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1)]
            for script in steps:
                for stmt in script.split(";"):
                    if stmt.strip():
                        self._db.execute(stmt)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

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
            for table in self._state_tables():
                db.execute(f'DELETE FROM "{table}"')
            db.execute("UPDATE meta SET cluster_id = ?, applied_index = 0 WHERE id = 0", (cluster_id,))
            db.execute(_UPSERT_HARD_STATE, (0, None, 0))
            db.execute("UPDATE snapshot_meta SET idx = 0, term = 0, membership = x'' WHERE id = 0")
            db.execute("DELETE FROM snapshot_staging")
        self._cluster_id, self._applied, self._last_index, self._snap_index = cluster_id, 0, 0, 0
        self._log_bytes = 0

    def apply(self, entries: Sequence[Entry], fn: Callable[[KVStore, Entry], R]) -> list[R]:
        check_apply(self._applied, self._last_index, entries)
        if not entries:
            return []
        store = _TxnKV(self._db)
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
        return _get(self._db, key)

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return _scan(self._db, prefix, after, limit)

    def expired_keys(self, now_ms: int, limit: int) -> list[str]:
        return _expired_keys(self._db, now_ms, limit)

    def auth_get(self, kind: str, name: str) -> str | None:
        return _auth_get(self._db, kind, name)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return _auth_scan(self._db, kind)

    def close(self) -> None:
        self._db.close()

    # ------------------------------------------------------------------ snapshots and compaction

    def _state_tables(self) -> list[str]:
        rows = self._db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
        return [n for (n,) in rows if n not in RAFT_TABLES and not n.startswith("sqlite_")]

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
        # A second connection in one read transaction: WAL gives it a consistent view of the
        # applied state while the main connection keeps committing.
        reader = sqlite3.connect(self.path, isolation_level=None, check_same_thread=True)
        try:
            reader.execute("BEGIN")
            (index,) = reader.execute("SELECT applied_index FROM meta WHERE id = 0").fetchone()
        except BaseException:
            reader.close()
            raise
        return index, _snapshot_chunks(reader, self._state_tables(), chunk_bytes)

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
        tables = set(self._state_tables())
        with self._transaction("installing a snapshot"):
            for table in sorted(tables):
                db.execute(f'DELETE FROM "{table}"')
            current: tuple[str, str] | None = None
            # One staged chunk in memory at a time (a snapshot may be gigabytes).
            seqs = [seq for (seq,) in db.execute("SELECT seq FROM snapshot_staging ORDER BY seq")]
            for seq in seqs:
                (data,) = db.execute("SELECT data FROM snapshot_staging WHERE seq = ?", (seq,)).fetchone()
                for line in bytes(data).splitlines():
                    row = json.loads(line)
                    if isinstance(row, dict):
                        name, cols = str(row["table"]), [str(c) for c in row["columns"]]
                        if name not in tables:
                            raise InvariantViolation(f"snapshot has unknown table {name!r}")
                        quoted = ", ".join(f'"{c}"' for c in cols)
                        current = (f'INSERT INTO "{name}" ({quoted}) VALUES ({", ".join("?" * len(cols))})', name)
                    elif current is not None:
                        db.execute(current[0], row)
                    else:
                        raise InvariantViolation("snapshot row before any table header")
            db.execute("UPDATE meta SET applied_index = ? WHERE id = 0", (index,))
            db.execute("DELETE FROM log")
            db.execute(
                "UPDATE snapshot_meta SET idx = ?, term = ?, membership = ? WHERE id = 0", (index, term, membership)
            )
            db.execute("DELETE FROM snapshot_staging")
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
        rows = self._db.execute(f"SELECT key, {_KV_COLUMNS} FROM kv ORDER BY key")
        return [(k, KeyRecord(v, c, m, n, x)) for k, v, c, m, n, x in rows]


_SNAPSHOT_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot_meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    membership BLOB NOT NULL
);
INSERT OR IGNORE INTO snapshot_meta (id, idx, term, membership) VALUES (0, 0, 0, x'');
CREATE TABLE IF NOT EXISTS snapshot_staging (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""


def _snapshot_chunks(reader: sqlite3.Connection, tables: list[str], chunk_bytes: int) -> Iterator[bytes]:
    """JSON lines: a header {"table", "columns"} per table, then one array per row; chunks
    end on line boundaries. Holds the read transaction until exhausted or closed."""

    def lines() -> Iterator[bytes]:
        for table in tables:
            cur = reader.execute(f'SELECT * FROM "{table}"')
            yield json.dumps({"table": table, "columns": [d[0] for d in cur.description]}).encode()
            for row in cur:
                yield json.dumps(list(row), ensure_ascii=False, separators=(",", ":")).encode()

    try:
        buf: list[bytes] = []
        size = 0
        for line in lines():
            buf.append(line)
            size += len(line) + 1
            if size >= chunk_bytes:
                yield b"\n".join(buf)
                buf, size = [], 0
        if buf:
            yield b"\n".join(buf)
    finally:
        reader.close()


def _fsync_dir(path: str) -> None:
    """Make the new database file's directory entry durable (the file itself is synced by SQLite)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _conforms(s: SQLiteStorage) -> Storage:
    return s  # mypy checks that SQLiteStorage satisfies the Storage protocol
