"""Backups of the applied state of a SQLite storage file, and seeding a new node from one.

Theory of operation. A backup is a stream of JSON lines:

1. a header ``{"format": "beaver-vault-backup", "version": 1, "revision": N, "cluster_id", ...,
   "schema_version", "tables": {name: rows}}``, where ``N`` is the applied index the copy was
   read at (every key's revisions are at most ``N``);
2. the state machine's tables in the Raft snapshot format (``storage/sqlite.py``): per table a
   ``{"table", "columns"}`` line, then one JSON array per row;
3. a trailer ``{"end": "beaver-vault-backup", "rows": R, "lines": L, "sha256": H}``, ``H`` being
   the SHA-256 of every byte before the trailer.

The copy is consistent: :class:`BackupReader` opens its own connection and reads inside one
read transaction, so WAL gives it one snapshot of the applied state while the node keeps
committing. Its connection is not tied to a thread (``check_same_thread=False``), so the caller
may advance it from worker threads, one call at a time (the HTTP route uses ``trio.to_thread``).

A file is trusted only once :func:`verify_backup` has read all of it: header first, trailer
last, the checksum and the counts matching. :func:`seed_from_backup` then builds a fresh
storage file (a new cluster id, a one-member configuration, the state installed as a snapshot
at index ``N``, so the restored node's log, and every new revision, continues above ``N``).
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Generator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from beaver_vault.raft.messages import HardState, Member, Membership
from beaver_vault.storage.base import RAFT_TABLES
from beaver_vault.storage.sqlite import SCHEMA_VERSION, SQLiteStorage

FORMAT = "beaver-vault-backup"
FORMAT_VERSION = 1
CHUNK_BYTES = 256 * 1024
MAX_LINE_BYTES = 64 * 1024 * 1024  # a line longer than this is not ours (values are bounded far below)
RESTORED_TERM = 1  # the term recorded for the restored snapshot; the node's first election is term 2


class BackupError(ValueError):
    """The file is not a complete, intact backup this program can restore. For humans."""


def _read_only_uri(path: str | Path) -> str:
    """A read-only SQLite URI for ``path`` (percent-encoded: any file name works)."""
    return Path(path).resolve().as_uri() + "?mode=ro"


def _line(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


# --- reading a backup out of a live storage file ------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupHeader:
    revision: int
    cluster_id: str | None
    schema_version: int
    tables: Mapping[str, int]  # table -> rows
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def rows(self) -> int:
        return sum(self.tables.values())

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "revision": self.revision,
            "cluster_id": self.cluster_id,
            "schema_version": self.schema_version,
            "tables": dict(self.tables),
            **{k: v for k, v in self.extra.items() if k not in _HEADER_KEYS},
        }


_HEADER_KEYS = frozenset({"format", "version", "revision", "cluster_id", "schema_version", "tables"})


class BackupReader:
    """A consistent read of one storage file's applied state. ``open()`` (starts the read
    transaction, returns the header), then iterate ``chunks()``; ``close()`` in any case."""

    def __init__(self, db_path: str | Path, *, chunk_bytes: int = CHUNK_BYTES, extra: Mapping[str, Any] | None = None):
        self.db_path = str(db_path)
        self.chunk_bytes = chunk_bytes
        self.extra = dict(extra or {})
        self._db: sqlite3.Connection | None = None
        self.header: BackupHeader | None = None
        self.bytes_out = 0

    def open(self) -> BackupHeader:
        # Read-only: a backup never writes to the node's file (uri mode=ro keeps WAL readable).
        db = sqlite3.connect(_read_only_uri(self.db_path), uri=True, isolation_level=None, check_same_thread=False)
        try:
            db.execute("BEGIN")
            cluster_id, revision = db.execute("SELECT cluster_id, applied_index FROM meta WHERE id = 0").fetchone()
            version = db.execute("PRAGMA user_version").fetchone()[0]
            names = [
                n
                for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")
                if n not in RAFT_TABLES and not n.startswith("sqlite_")
            ]
            tables = {n: db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
        except BaseException:
            db.close()
            raise
        self._db = db
        self.header = BackupHeader(int(revision), cluster_id, int(version), tables, self.extra)
        return self.header

    def chunks(self) -> Generator[bytes, None, None]:
        """The whole backup in chunks of about ``chunk_bytes``, ending on line boundaries; the
        last chunk ends with the trailer. Advance it one call at a time (any thread)."""
        if self._db is None or self.header is None:
            raise RuntimeError("BackupReader.open() first")
        db, header = self._db, self.header
        digest = hashlib.sha256()
        lines = rows = 0
        buf: list[bytes] = []
        size = 0

        def take() -> bytes:
            nonlocal buf, size
            data = b"".join(buf)
            buf, size = [], 0
            digest.update(data)
            self.bytes_out += len(data)
            return data

        def add(line: bytes) -> None:
            nonlocal size, lines
            buf.append(line)
            size += len(line)
            lines += 1

        add(_line(header.to_json()))
        for table in header.tables:
            cur = db.execute(f'SELECT * FROM "{table}" ORDER BY rowid')
            add(_line({"table": table, "columns": [d[0] for d in cur.description]}))
            for row in cur:
                add(_line(list(row)))
                rows += 1
                if size >= self.chunk_bytes:
                    yield take()
        last = take()
        trailer = _line({"end": FORMAT, "rows": rows, "lines": lines, "sha256": digest.hexdigest()})
        self.bytes_out += len(trailer)
        yield last + trailer

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


# --- checking a backup file ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class VerifiedBackup:
    path: Path
    revision: int
    cluster_id: str | None
    schema_version: int
    tables: Mapping[str, int]
    rows: int
    size_bytes: int
    sha256: str
    header: Mapping[str, Any]


def _read_lines(f: BinaryIO) -> Iterator[bytes]:
    while True:
        line = f.readline(MAX_LINE_BYTES + 1)
        if not line:
            return
        if len(line) > MAX_LINE_BYTES:
            raise BackupError(f"a line is longer than {MAX_LINE_BYTES} bytes: not a Beaver-Vault backup")
        yield line


def _json_line(line: bytes, where: str) -> Any:
    try:
        return json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise BackupError(f"{where} is not valid JSON: the file is damaged") from None


def parse_header(line: bytes) -> dict[str, Any]:
    header = _json_line(line, "the first line")
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise BackupError("not a Beaver-Vault backup (the first line is not a backup header)")
    if header.get("version") != FORMAT_VERSION:
        raise BackupError(f"backup format version {header.get('version')!r} is not supported (this program: {FORMAT_VERSION})")
    revision, tables = header.get("revision"), header.get("tables")
    schema = header.get("schema_version")
    if not isinstance(revision, int) or revision < 0 or not isinstance(tables, dict) or not isinstance(schema, int):
        raise BackupError("the backup header is malformed (revision, tables or schema_version)")
    if not all(isinstance(k, str) and isinstance(v, int) and v >= 0 for k, v in tables.items()):
        raise BackupError("the backup header is malformed (table row counts)")
    if schema > SCHEMA_VERSION:
        raise BackupError(f"the backup's schema version {schema} is newer than this program's ({SCHEMA_VERSION})")
    return header


def verify_backup(path: Path) -> VerifiedBackup:
    """Read the whole file; raise :class:`BackupError` unless it is complete and intact."""
    try:
        f = path.open("rb")
    except OSError as e:
        raise BackupError(f"cannot read {path}: {e.strerror or e}") from None
    digest = hashlib.sha256()
    size = 0
    with f:
        lines = _read_lines(f)
        first = next(lines, None)
        if first is None:
            raise BackupError(f"{path} is empty: not a backup")
        header = parse_header(first)
        digest.update(first)
        size += len(first)
        count, rows, trailer = 1, 0, None
        for line in lines:
            if trailer is not None:
                raise BackupError("data after the end marker: the file is damaged")
            obj = _json_line(line, f"line {count + 1}") if line.endswith(b"\n") else None
            if isinstance(obj, dict) and obj.get("end") == FORMAT:
                trailer = obj
                continue
            if obj is None:
                raise BackupError(
                    f"{path} is truncated: it ends in the middle of line {count + 1} after {size + len(line)} bytes "
                    "(no end marker)"
                )
            if isinstance(obj, list):
                rows += 1
            elif not (isinstance(obj, dict) and isinstance(obj.get("table"), str) and isinstance(obj.get("columns"), list)):
                raise BackupError(f"line {count + 1} is neither a table header nor a row: the file is damaged")
            digest.update(line)
            size += len(line)
            count += 1
    if trailer is None:
        raise BackupError(f"{path} is truncated: no end marker after {size} bytes ({count} lines)")
    if trailer.get("sha256") != digest.hexdigest():
        raise BackupError(f"{path} is damaged: its SHA-256 checksum does not match its contents")
    expected_rows = sum(header["tables"].values())
    if trailer.get("lines") != count or trailer.get("rows") != rows or rows != expected_rows:
        raise BackupError(
            f"{path} is damaged: {rows} rows in {count} lines, the header and end marker say "
            f"{expected_rows} rows / {trailer.get('rows')} rows in {trailer.get('lines')} lines"
        )
    return VerifiedBackup(
        path=path,
        revision=header["revision"],
        cluster_id=header.get("cluster_id"),
        schema_version=header["schema_version"],
        tables=dict(header["tables"]),
        rows=rows,
        size_bytes=size,
        sha256=digest.hexdigest(),
        header=header,
    )


# --- restoring ----------------------------------------------------------------------------------


def seed_from_backup(
    backup: VerifiedBackup, db_path: Path, *, cluster_id: str, member: Member, chunk_bytes: int = CHUNK_BYTES
) -> None:
    """Create a new storage file at ``db_path`` (which must not exist) holding the backup's state
    at its revision, as the first and only member of a new cluster ``cluster_id``.

    The state is installed exactly as a Raft snapshot from a leader would be (one durable
    step), at index = the backup's revision, with a one-member configuration; the log is empty,
    so the node's first entry (its election's no-op) is revision + 1. The file is re-read and
    re-checked while it is installed; any difference raises ``BackupError``.
    """
    if db_path.exists():
        raise BackupError(f"{db_path} exists already")
    membership = Membership((member,)).encode()
    storage = SQLiteStorage(db_path)
    try:
        storage.reset(cluster_id)
        storage.install_begin(backup.revision)
        digest = hashlib.sha256()
        seq, buf, size = 0, [], 0
        with backup.path.open("rb") as f:
            for n, line in enumerate(_read_lines(f)):
                if n == 0:
                    digest.update(line)
                    continue
                obj = json.loads(line)
                if isinstance(obj, dict) and obj.get("end") == FORMAT:
                    if obj.get("sha256") != digest.hexdigest():
                        raise BackupError(f"{backup.path} changed while it was being restored")
                    break
                digest.update(line)
                buf.append(line.rstrip(b"\n"))
                size += len(line)
                if size >= chunk_bytes:
                    storage.install_chunk(seq, b"\n".join(buf))
                    seq, buf, size = seq + 1, [], 0
        if buf:
            storage.install_chunk(seq, b"\n".join(buf))
        storage.install_finish(backup.revision, RESTORED_TERM, membership)
        storage.save(HardState(RESTORED_TERM, None, backup.revision), [])
        restored = {t: n for t, n in _row_counts(db_path).items() if n or t in backup.tables}
        if restored != {t: n for t, n in backup.tables.items()}:
            raise BackupError(f"restored row counts {restored} differ from the backup's {dict(backup.tables)}")
    finally:
        storage.close()


def _row_counts(db_path: Path) -> dict[str, int]:
    db = sqlite3.connect(_read_only_uri(db_path), uri=True)
    try:
        names = [
            n
            for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
            if n not in RAFT_TABLES and not n.startswith("sqlite_")
        ]
        return {n: db.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}
    finally:
        db.close()
