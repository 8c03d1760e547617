"""The tables of ``SQLiteStorage`` (``storage/sqlite.py``), their migrations and the file's setup.

``PRAGMA user_version`` holds the schema version. A new file gets ``_SCHEMA`` (version 1) and
every migration after it; an older file gets the migrations it lacks. ``SQLiteStorage`` runs
the statements ``upgrade_statements`` returns in one transaction when it opens the file, so an
upgrade happens entirely or not at all. The snapshot tables (``SNAPSHOT_SCHEMA``) are created
idempotently on every open, outside the versioned schema.
"""

from __future__ import annotations

import os
import sqlite3

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

# The snapshot position (compaction) and the chunks of a snapshot being installed.
SNAPSHOT_SCHEMA = """
CREATE TABLE IF NOT EXISTS snapshot_meta (
    id INTEGER PRIMARY KEY CHECK (id = 0),
    idx INTEGER NOT NULL,
    term INTEGER NOT NULL,
    membership BLOB NOT NULL
);
INSERT OR IGNORE INTO snapshot_meta (id, idx, term, membership) VALUES (0, 0, 0, x'');
CREATE TABLE IF NOT EXISTS snapshot_staging (seq INTEGER PRIMARY KEY, data BLOB NOT NULL);
"""


PAGE_CACHE_KIB = 8 * 1024

def configure(db: sqlite3.Connection, path: str, busy_timeout_ms: int) -> None:
    """WAL, an fsync at every commit, foreign keys, and how long to wait for a lock."""
    mode = db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    if str(mode).lower() != "wal":
        raise RuntimeError(f"{path}: could not enable WAL (journal_mode={mode})")
    db.execute("PRAGMA synchronous = FULL")  # fsync the WAL at every commit
    db.execute("PRAGMA foreign_keys = ON")
    db.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
    # A page cache of 8 MiB per connection (SQLite's default is 2 MiB): with a million keys the
    # index pages an update walks no longer fit in 2 MiB, and every write re-read them from the
    # OS. Bounded, so memory stays within the node's budget (bench/scale.py, issue 9).
    db.execute(f"PRAGMA cache_size = -{PAGE_CACHE_KIB}")


def upgrade_statements(version: int, path: str) -> list[str]:
    """The statements that bring a file at schema ``version`` to ``SCHEMA_VERSION``, the new
    ``user_version`` last (none: already current). Refuses a file newer than this program."""
    if version > SCHEMA_VERSION:
        raise RuntimeError(f"{path}: schema version {version} is newer than this program ({SCHEMA_VERSION})")
    if version == SCHEMA_VERSION:
        return []
    steps = [_SCHEMA] if version == 0 else []  # 0: a new file; _SCHEMA is version 1
    steps += [_MIGRATIONS[v] for v in range(max(version, 1) + 1, SCHEMA_VERSION + 1)]
    statements = [stmt for script in steps for stmt in script.split(";") if stmt.strip()]
    return [*statements, f"PRAGMA user_version = {SCHEMA_VERSION}"]


def fsync_dir(path: str) -> None:
    """Make the new database file's directory entry durable (the file itself is synced by SQLite)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
