"""``GET /api/v1/backup``: a consistent copy of this node's applied state, streamed.

Theory of operation: with ``?consistency=linearizable`` (the default) the node first takes a
read barrier, as any linearizable read does, so the copy holds every write acknowledged before
the request; ``stale`` copies whatever this node has applied. The copy itself is read by
``storage.backup.BackupReader`` on its own SQLite connection inside one read transaction
(WAL: writes go on meanwhile), in worker threads (``trio.to_thread``), one chunk of about
256 KiB at a time, so neither the event loop nor the node's writes wait for it and memory
stays bounded whatever the data size.

The answer (200, ``application/x-ndjson``) is the backup file itself (format in
``storage/backup.py``: header line, tables, trailer line with the SHA-256 of everything before
it), with ``X-Beaver-Vault-Revision`` (the applied index it was read at; also
``X-Beaver-Vault-Applied-Index``), ``X-Beaver-Vault-Backup-Rows`` (rows to expect, for progress
bars), ``X-Beaver-Vault-Consistency`` and a ``Content-Disposition`` file name. At most
``MAX_CONCURRENT_BACKUPS`` run at once (more: 503 ``Overloaded``); one that takes longer than
``BACKUP_TIMEOUT_S`` is cut off (the trailer is then missing: the file is refused later).
Errors: 400 bad ``consistency``; 503 no leader for the read barrier (``?consistency=stale``
works without one); 501 a node without a storage file (in-memory storage, tests only).
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Generator
from pathlib import Path
from typing import Any

import trio
from quart import Response, request
from quart_trio import QuartTrio

from beaver_vault.api.context import API_PREFIX, APPLIED_INDEX_HEADER, CONSISTENCY_HEADER, ApiContext
from beaver_vault.errors import NoLeader, NotLeader, Overloaded, Rejected
from beaver_vault.storage.backup import BackupReader

REVISION_HEADER = "X-Beaver-Vault-Revision"
ROWS_HEADER = "X-Beaver-Vault-Backup-Rows"
CONTENT_TYPE = "application/x-ndjson"
log = logging.getLogger("beaver_vault.api.backup")
MAX_CONCURRENT_BACKUPS = 2
BACKUP_TIMEOUT_S = 3600.0  # a read transaction held longer keeps SQLite from checkpointing its WAL


class _BackupBody:
    """The response body: chunks read in worker threads; the reader is closed however the
    response ends (fully sent, client gone, or never started)."""

    def __init__(self, reader: BackupReader, release: Any) -> None:
        self.reader = reader
        self.chunks: Generator[bytes, None, None] = reader.chunks()
        self.release = release
        self.closed = False
        self.complete = False

    def __aiter__(self) -> _BackupBody:
        return self

    async def __anext__(self) -> bytes:
        if self.closed:
            raise StopAsyncIteration
        chunk = await trio.to_thread.run_sync(next, self.chunks, None)
        if chunk is None:
            self.complete = True
            await self.aclose()
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        if not self.closed:
            self.closed = True
            self.chunks.close()
            self.reader.close()
            self.release()
            header = self.reader.header
            revision = header.revision if header is not None else None
            fields = {"revision": revision, "bytes": self.reader.bytes_out, "complete": self.complete}
            log.info(
                "backup of revision %s %s after %d bytes",
                revision,
                "sent" if self.complete else "abandoned",
                self.reader.bytes_out,
                extra={"event": "backup_finished", "fields": fields},
            )


def register(app: QuartTrio, ctx: ApiContext) -> None:
    runtime = ctx.runtime
    running = 0

    def release() -> None:
        nonlocal running
        running -= 1

    @app.route(f"{API_PREFIX}/backup", methods=["GET"])
    async def backup() -> Response:
        nonlocal running
        level = ctx.consistency()
        db_path = getattr(getattr(runtime, "storage", None), "path", None)
        if not isinstance(db_path, str) or db_path == ":memory:":
            raise Rejected("this node keeps no storage file to back up", status=501)
        if running >= MAX_CONCURRENT_BACKUPS:
            raise Overloaded(f"{MAX_CONCURRENT_BACKUPS} backups are running on this node already")
        if level == "linearizable":
            try:
                await ctx.bounded(runtime.read_barrier(timeout_s=ctx.opts.request_timeout_s))
            except NotLeader:
                raise NoLeader("no leader to confirm a linearizable backup; retry, or ask for ?consistency=stale") from None
        created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
        reader = BackupReader(
            Path(db_path), extra={"node_id": runtime.node_id, "created_at": created, "consistency": level}
        )
        running += 1
        try:
            header = await trio.to_thread.run_sync(reader.open)
        except BaseException:
            reader.close()
            release()
            raise
        headers = {
            REVISION_HEADER: str(header.revision),
            APPLIED_INDEX_HEADER: str(header.revision),
            CONSISTENCY_HEADER: level,
            ROWS_HEADER: str(header.rows),
            "Cache-Control": "no-store",
            "Content-Disposition": f'attachment; filename="beaver-vault-{header.revision}.backup"',
        }
        if request.method == "HEAD":  # the headers only: nothing to stream
            reader.close()
            release()
            return Response(b"", status=200, headers=headers, content_type=CONTENT_TYPE)
        body = _BackupBody(reader, release)
        log.info(
            "backup of revision %d started (%d rows, %s)",
            header.revision,
            header.rows,
            level,
            extra={"event": "backup_started", "fields": {"revision": header.revision, "rows": header.rows}},
        )
        response = Response(body, status=200, headers=headers, content_type=CONTENT_TYPE)
        response.timeout = BACKUP_TIMEOUT_S
        return response
