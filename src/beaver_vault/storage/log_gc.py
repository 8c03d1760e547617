"""Deleting compacted log rows in small batches, spread over time (SQLite).

Theory of operation: compaction (``SQLiteStorage.compact``) only records the new snapshot
position durably: one tiny transaction. The rows it made obsolete (``idx <= snapshot index``)
are no longer part of the log (``load`` and every log read start after the snapshot index),
so deleting them is garbage collection, not a Raft step: this collector deletes them a batch at
a time, each batch its own short transaction of at most ``batch_rows`` rows and about
``batch_bytes`` bytes, and the caller (the runtime's housekeeping task) spaces the batches out.
One DELETE of ~9,000 rows of up to 1 MiB inside one fsynced transaction used to stop the node
for seconds; a batch here costs a few milliseconds.

The batches run with ``synchronous=NORMAL``: losing a deleted batch to a power cut only means
deleting it again (the snapshot position they depend on was synced by ``compact``). A batch
that fails (the disk is full: a delete needs WAL space too) is rolled back and retried later;
it never stops the node.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from beaver_vault.storage.disk_errors import classify
from beaver_vault.storage.timings import Durations

BATCH_ROWS = 512
BATCH_BYTES = 4 * 1024 * 1024


@dataclass(slots=True)
class GcStats:
    rows_deleted: int = 0
    bytes_deleted: int = 0
    batches: int = 0
    failures: int = 0
    last_error: str = ""


class LogCollector:
    def __init__(
        self,
        db: sqlite3.Connection,
        *,
        batch_rows: int = BATCH_ROWS,
        batch_bytes: int = BATCH_BYTES,
        timing: Durations | None = None,
    ) -> None:
        if batch_rows < 1 or batch_bytes < 1:
            raise ValueError("batch_rows and batch_bytes must be at least 1")
        self._db = db
        self.batch_rows = batch_rows
        self.batch_bytes = batch_bytes
        self.timing = timing
        self.stats = GcStats()
        self._floor = 0  # every row with idx <= _floor is known to be gone

    def pending(self, upto: int) -> bool:
        """Are there rows at or below ``upto`` left to delete (without reading them)?"""
        if upto <= self._floor:
            return False
        row = self._db.execute("SELECT min(idx) FROM log").fetchone()
        first = row[0] if row else None
        if first is None or first > upto:
            self._floor = upto
            return False
        return True

    def step(self, upto: int) -> int:
        """Delete one batch of rows with ``idx <= upto``, oldest first; the rows deleted."""
        if not self.pending(upto):
            return 0
        db = self._db
        started = time.perf_counter()
        # The batch's end: at most batch_rows rows and about batch_bytes bytes (length() of a
        # blob reads its size from the record header, not its overflow pages).
        end = None
        size = 0
        n = 0
        for idx, length in db.execute(
            "SELECT idx, length(data) FROM log WHERE idx <= ? ORDER BY idx LIMIT ?", (upto, self.batch_rows)
        ):
            end = idx
            size += int(length or 0)
            n += 1
            if size >= self.batch_bytes:
                break
        if end is None:
            self._floor = upto
            return 0
        try:
            db.execute("PRAGMA synchronous = NORMAL")
            db.execute("BEGIN IMMEDIATE")
            try:
                deleted = db.execute("DELETE FROM log WHERE idx <= ?", (end,)).rowcount
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    try:
                        db.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
        except (sqlite3.Error, OSError) as e:
            if classify(e) is None:
                raise
            self.stats.failures += 1
            self.stats.last_error = str(e)
            return 0
        finally:
            db.execute("PRAGMA synchronous = FULL")
        self.stats.rows_deleted += deleted
        self.stats.bytes_deleted += size
        self.stats.batches += 1
        if end >= upto:
            self._floor = upto
        if self.timing is not None:
            self.timing.observe(time.perf_counter() - started)
        return int(deleted)
