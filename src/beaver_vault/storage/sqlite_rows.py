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

# ``written(get(key), ...)`` in one statement: a new key starts at version 1 with its
# create_revision; an existing one keeps its create_revision and counts one more version.
_WRITE_KV = (
    "INSERT INTO kv (key, value, create_revision, mod_revision, version, expires_at) VALUES (?, ?, ?, ?, 1, ?) "
    "ON CONFLICT (key) DO UPDATE SET value = excluded.value, mod_revision = excluded.mod_revision, "
    "version = kv.version + 1, expires_at = excluded.expires_at RETURNING version"
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


def trim_oldest_requests(db: sqlite3.Connection, keep: int, counts: RequestCounts) -> int:
    """Forget the oldest remembered requests beyond ``keep`` in all: the (keep+1)-th newest time,
    if any, and everything older. That time is found from the oldest end (the (n-keep)-th
    oldest), a walk of the excess instead of ``keep`` rows."""
    excess = counts.total(db) - keep
    if excess <= 0:
        return 0
    gone = [
        c
        for (c,) in db.execute(
            "DELETE FROM requests WHERE time_ms <= (SELECT time_ms FROM requests ORDER BY time_ms LIMIT 1 OFFSET ?) "
            "RETURNING client",
            (excess - 1,),
        )
    ]
    counts.removed(gone)
    return len(gone)


class RequestCounts:
    """How many requests are remembered, in all and per client, kept beside the table so that
    trimming to the newest ``keep`` (after each idempotent write) walks the index from the
    oldest end over the excess, usually one row, not over ``keep`` rows from the newest end
    (44 us of a 125-us put with 1,000 remembered). A count is read from the table the first time
    it is needed, then kept up to date by every change ``TxnKV`` makes. Only the storage
    worker's connection writes the table; anything else that changes it (a failed transaction's
    rollback, a reset, a snapshot install) calls ``forget``. The rows deleted are exactly those
    the walk from the newest end finds: the (keep+1)-th newest is the (n-keep)-th oldest. It
    also keeps a time no later than the oldest remembered one, so the purge by age that runs
    before every idempotent write costs no statement while nothing is that old."""

    __slots__ = ("_total", "_per_client", "_oldest_ms")
    MAX_CLIENTS = 4096  # counts kept for at most this many clients (then read again)
    NONE_LEFT = 2**63  # the oldest time of an empty table

    def __init__(self) -> None:
        self._total: int | None = None
        self._per_client: dict[str, int] = {}
        # At most the oldest remembered time (deletions only raise the true one): a purge of
        # everything older than a time not above it has nothing to delete and runs no statement.
        self._oldest_ms: int | None = None

    def forget(self) -> None:
        self._total = self._oldest_ms = None
        self._per_client.clear()

    def oldest_ms(self, db: sqlite3.Connection) -> int:
        if self._oldest_ms is None:
            (oldest,) = db.execute("SELECT min(time_ms) FROM requests").fetchone()
            self._oldest_ms = self.NONE_LEFT if oldest is None else int(oldest)
        return self._oldest_ms

    def purged(self, clients: list[str]) -> None:
        self.removed(clients)
        self._oldest_ms = None  # read again when next needed

    def total(self, db: sqlite3.Connection) -> int:
        if self._total is None:
            self._total = int(db.execute("SELECT count(*) FROM requests").fetchone()[0])
        return self._total

    def of(self, db: sqlite3.Connection, client: str) -> int:
        n = self._per_client.get(client)
        if n is None:
            if len(self._per_client) >= self.MAX_CLIENTS:
                self._per_client.clear()
            n = self._per_client[client] = int(
                db.execute("SELECT count(*) FROM requests WHERE client = ?", (client,)).fetchone()[0]
            )
        return n

    def added(self, client: str, time_ms: int) -> None:
        self.added_time(time_ms)
        if self._total is not None:
            self._total += 1
        if client in self._per_client:
            self._per_client[client] += 1

    def added_time(self, time_ms: int) -> None:
        if self._oldest_ms is not None:
            self._oldest_ms = min(self._oldest_ms, time_ms)

    def removed(self, clients: list[str]) -> None:
        if self._total is not None:
            self._total -= len(clients)
        for c in clients:
            n = self._per_client.get(c)
            if n is not None:
                self._per_client[c] = n - 1


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

    __slots__ = ("_db", "_counts")

    def __init__(self, db: sqlite3.Connection, counts: RequestCounts) -> None:
        self._db = db
        self._counts = counts

    def get(self, key: str) -> KeyRecord | None:
        return get_record(self._db, key)

    def put(self, key: str, record: KeyRecord) -> None:
        r = record
        self._db.execute(_UPSERT_KV, (key, r.value, r.create_revision, r.mod_revision, r.version, r.expires_at_ms))

    def put_value(self, key: str, value_json: str, index: int, expires_at_ms: int | None) -> bool:
        (version,) = self._db.execute(_WRITE_KV, (key, value_json, index, index, expires_at_ms)).fetchone()
        return int(version) == 1  # a key's version starts at 1 and only grows while it exists

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
        values = (record.index, record.time_ms, record.result, client, request_id)
        if self._db.execute(
            "INSERT OR IGNORE INTO requests (idx, time_ms, result, client, id) VALUES (?, ?, ?, ?, ?)", values
        ).rowcount:
            self._counts.added(client, record.time_ms)
        else:  # remembered already: replaced, the counts unchanged
            self._db.execute("UPDATE requests SET idx = ?, time_ms = ?, result = ? WHERE client = ? AND id = ?", values)
            self._counts.added_time(record.time_ms)

    def purge_requests(self, before_ms: int) -> int:
        if self._counts.oldest_ms(self._db) >= before_ms:
            return 0  # nothing that old (usual: a busy client's requests are trimmed long before)
        gone = [c for (c,) in self._db.execute("DELETE FROM requests WHERE time_ms < ? RETURNING client", (before_ms,))]
        self._counts.purged(gone)
        return len(gone)

    def trim_requests(self, client: str, keep: int) -> int:
        # The (keep+1)-th newest idx of the client, if any, and everything older; found from the
        # oldest end, a walk of the excess (usually one row) instead of ``keep`` rows.
        excess = self._counts.of(self._db, client) - keep
        if excess <= 0:
            return 0
        gone = self._db.execute(
            "DELETE FROM requests WHERE client = ? AND idx <= "
            "(SELECT idx FROM requests WHERE client = ? ORDER BY idx LIMIT 1 OFFSET ?)",
            (client, client, excess - 1),
        ).rowcount
        self._counts.removed([client] * gone)
        return gone

    def auth_get(self, kind: str, name: str) -> str | None:
        return auth_doc(self._db, kind, name)

    def auth_put(self, kind: str, name: str, doc: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO auth (kind, name, doc) VALUES (?, ?, ?)", (kind, name, doc))

    def auth_delete(self, kind: str, name: str) -> None:
        self._db.execute("DELETE FROM auth WHERE kind = ? AND name = ?", (kind, name))

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return auth_docs(self._db, kind)

    def trim_all_requests(self, keep: int) -> int:
        return trim_oldest_requests(self._db, keep, self._counts)
