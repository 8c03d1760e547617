"""Snapshots of ``SQLiteStorage`` (``storage/sqlite.py``): reading the applied state out as
chunks, and replacing it with the chunks of a snapshot staged by ``install_chunk``.

The format: JSON lines, a header ``{"table", "columns"}`` per table, then one array per row;
chunks end on line boundaries. Every table but the Raft ones (``base.RAFT_TABLES``) is state.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

from beaver_vault.errors import InvariantViolation
from beaver_vault.storage.base import RAFT_TABLES


def state_tables(db: sqlite3.Connection) -> list[str]:
    """The tables of the applied state (what a snapshot carries), by name."""
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
    return [n for (n,) in rows if n not in RAFT_TABLES and not n.startswith("sqlite_")]


def open_snapshot(path: str, tables: list[str], chunk_bytes: int) -> tuple[int, Iterator[bytes]]:
    """The applied index and the chunks of the state at it. A second connection in one read
    transaction: WAL gives it a consistent view of the applied state while the main
    connection keeps committing."""
    reader = sqlite3.connect(path, isolation_level=None, check_same_thread=True)
    try:
        reader.execute("BEGIN")
        (index,) = reader.execute("SELECT applied_index FROM meta WHERE id = 0").fetchone()
    except BaseException:
        reader.close()
        raise
    return index, _snapshot_chunks(reader, tables, chunk_bytes)


def _snapshot_chunks(reader: sqlite3.Connection, tables: list[str], chunk_bytes: int) -> Iterator[bytes]:
    """Holds the read transaction until exhausted or closed."""

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


def replace_state_from_staging(db: sqlite3.Connection, tables: set[str]) -> None:
    """Empty every state table, then insert the rows of the staged chunks, in ``seq`` order.
    Runs inside the caller's transaction; one staged chunk in memory at a time (a snapshot
    may be gigabytes). A table the snapshot names that this file lacks is refused."""
    for table in sorted(tables):
        db.execute(f'DELETE FROM "{table}"')
    current: tuple[str, str] | None = None
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
