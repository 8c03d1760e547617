"""Which storage exceptions mean "the disk let us down", and the typed error they become.

Theory of operation: a full disk or a failing device shows up as ``sqlite3.OperationalError``
(SQLITE_FULL, SQLITE_IOERR and its extended codes) or as an ``OSError`` (ENOSPC, EDQUOT, EIO)
from our own file calls. Those are operating conditions, not bugs: the storage rolls the
transaction back and raises :class:`beaver_vault.errors.StorageFailure` instead, so the node
(``node/disk_guard.py``) can stop accepting writes, say why, and retry, rather than crash and
restart into the same full disk. Anything else (a constraint broken, a corrupt file) is left
as it is: it stops the node.

What a failure means for the data: SQLite rolls a failed transaction back, so a failure before
or during the statements wrote nothing. A failure of the COMMIT itself is different: with
SQLITE_FULL the WAL frames could not be written (nothing committed), but with an I/O error the
fsync may have failed after the frames were written, and whether they are durable is unknown
(``maybe_written``).
"""

from __future__ import annotations

import errno
import sqlite3

from beaver_vault.errors import StorageFailure

DISK_FULL = "disk_full"
IO_ERROR = "io_error"

_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})
_IO_ERRNOS = frozenset({errno.EIO, errno.EROFS})


def classify(exc: BaseException) -> str | None:
    """``DISK_FULL``, ``IO_ERROR`` or None (not a disk problem)."""
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int):
            primary = code & 0xFF
            if primary == sqlite3.SQLITE_FULL:
                return DISK_FULL
            if primary == sqlite3.SQLITE_IOERR:
                return IO_ERROR
        text = str(exc).lower()  # older bindings without error codes
        if "database or disk is full" in text:
            return DISK_FULL
        if "disk i/o error" in text:
            return IO_ERROR
        return None
    if isinstance(exc, OSError):
        if exc.errno in _FULL_ERRNOS:
            return DISK_FULL
        if exc.errno in _IO_ERRNOS:
            return IO_ERROR
    return None


def translate(exc: BaseException, *, committing: bool, what: str) -> StorageFailure | None:
    """The ``StorageFailure`` to raise in place of ``exc``, or None to let ``exc`` through."""
    reason = classify(exc)
    if reason is None:
        return None
    maybe_written = committing and reason == IO_ERROR
    words = "no space left on the device" if reason == DISK_FULL else "an I/O error"
    detail = f"{what} failed: {words} ({exc})"
    if maybe_written:
        detail += "; the data may or may not be on disk"
    return StorageFailure(reason, detail, maybe_written=maybe_written)
