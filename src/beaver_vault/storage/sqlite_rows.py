"""The key-value, request and auth rows of ``SQLiteStorage`` (``storage/sqlite.py``): the reads
the storage answers directly, and ``TxnKV``, the ``KVStore`` the state machine writes through
inside ``apply``'s transaction. Plain functions of a connection: no transaction of their own.
"""

from __future__ import annotations

import sqlite3

from beaver_vault.kv.records import RequestRecord
from beaver_vault.kv.state import KeyRecord

KV_COLUMNS = "value, create_revision, mod_revision, version, expires_at"
_UPSERT_KV = (
    "INSERT INTO kv (key, value, create_revision, mod_revision, version, expires_at) VALUES (?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, create_revision = excluded.create_revision, "
    "mod_revision = excluded.mod_revision, version = excluded.version, expires_at = excluded.expires_at"
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


def scan_records(db: sqlite3.Connection, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
    if limit < 0:
        raise ValueError("limit must be >= 0")
    sql = f"SELECT key, {KV_COLUMNS} FROM kv WHERE key >= ?"
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


def get_record(db: sqlite3.Connection, key: str) -> KeyRecord | None:
    row = db.execute(f"SELECT {KV_COLUMNS} FROM kv WHERE key = ?", (key,)).fetchone()
    return None if row is None else KeyRecord(*row)


def all_records(db: sqlite3.Connection) -> list[tuple[str, KeyRecord]]:
    rows = db.execute(f"SELECT key, {KV_COLUMNS} FROM kv ORDER BY key")
    return [(k, KeyRecord(v, c, m, n, x)) for k, v, c, m, n, x in rows]


def auth_doc(db: sqlite3.Connection, kind: str, name: str) -> str | None:
    row = db.execute("SELECT doc FROM auth WHERE kind = ? AND name = ?", (kind, name)).fetchone()
    return None if row is None else str(row[0])


def auth_docs(db: sqlite3.Connection, kind: str) -> list[tuple[str, str]]:
    return [(n, d) for n, d in db.execute("SELECT name, doc FROM auth WHERE kind = ? ORDER BY name", (kind,))]


def trim_oldest_requests(db: sqlite3.Connection, keep: int) -> int:
    # The (keep+1)-th newest time, if any, and everything older (a walk of the time index).
    return db.execute(
        "DELETE FROM requests WHERE time_ms <= (SELECT time_ms FROM requests ORDER BY time_ms DESC LIMIT 1 OFFSET ?)",
        (keep,),
    ).rowcount


def expired_keys(db: sqlite3.Connection, now_ms: int, limit: int) -> list[str]:
    if limit < 0:
        raise ValueError("limit must be >= 0")
    rows = db.execute(
        "SELECT key FROM kv WHERE expires_at IS NOT NULL AND expires_at <= ? ORDER BY expires_at, key LIMIT ?",
        (now_ms, limit),
    )
    return [k for (k,) in rows]


class TxnKV:
    """The ``KVStore`` handed to ``apply``'s function: reads and writes inside the open transaction."""

    __slots__ = ("_db",)

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def get(self, key: str) -> KeyRecord | None:
        return get_record(self._db, key)

    def put(self, key: str, record: KeyRecord) -> None:
        r = record
        self._db.execute(_UPSERT_KV, (key, r.value, r.create_revision, r.mod_revision, r.version, r.expires_at_ms))

    def delete(self, key: str) -> None:
        self._db.execute("DELETE FROM kv WHERE key = ?", (key,))

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return scan_records(self._db, prefix, after, limit)

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
        return auth_doc(self._db, kind, name)

    def auth_put(self, kind: str, name: str, doc: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO auth (kind, name, doc) VALUES (?, ?, ?)", (kind, name, doc))

    def auth_delete(self, kind: str, name: str) -> None:
        self._db.execute("DELETE FROM auth WHERE kind = ? AND name = ?", (kind, name))

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return auth_docs(self._db, kind)

    def trim_all_requests(self, keep: int) -> int:
        return trim_oldest_requests(self._db, keep)
