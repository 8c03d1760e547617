"""A LazyFS-like FUSE layer: a crash loses what was written but not fsynced.

``python -m jepsen_like.lazyfs BACKING MOUNTPOINT CONTROL`` mounts BACKING at MOUNTPOINT (FUSE, via
``fusepy`` and Debian's ``libfuse2``; root). Every call passes through to the backing files,
but the layer keeps, per file, an undo log of everything written since that file's last
``fsync``/``fdatasync``: the bytes each write overwrote and the size before it (and the tail
a truncate cut off). its last fsync, newest change first, and forgets the logs. CONTROL is a FIFO the layer creates:
the line ``crash`` there makes it "lose power" (roll every file back to its last fsync, newest
change first) and then write the number of crashes so far to ``CONTROL.ack``. (FUSE's loop
holds the main thread, where Python runs signal handlers, hence a FIFO.) The harness SIGKILLs
the node, waits for it to die, asks for a crash, waits for the ack and only then restarts it, so the node comes back to
exactly what its fsyncs made durable: the page cache it had written into is gone, as after a
power cut. (Dropping the kernel page cache after a SIGKILL loses nothing: the kernel writes
dirty pages back; that is why a layer that sees the fsyncs is needed.)

Limits, said plainly: directory operations (create, rename, unlink, mkdir) are durable at once
(LazyFS can lose those too); a truncate that would need to remember more than
``TAIL_MAX_BYTES`` is taken as durable; writes through a shared mmap reach the layer only when
the kernel writes them back (SQLite's ``-shm`` index, which SQLite rebuilds on recovery
anyway). The ack file also carries the counters; SIGTERM unmounts.
"""

from __future__ import annotations

import errno
import os
import sys
import threading
from typing import Any

TAIL_MAX_BYTES = 64 * 1024 * 1024


def main(argv: list[str] | None = None) -> int:
    from fuse import FUSE, FuseOSError, Operations  # type: ignore[import-untyped]  # fusepy; only for this fault

    args = sys.argv[1:] if argv is None else argv
    if len(args) != 3:
        print("usage: python -m jepsen_like.lazyfs BACKING MOUNTPOINT CONTROL", file=sys.stderr)
        return 2
    backing, mountpoint, control = (os.path.realpath(a) for a in args)

    class Lazy(Operations):  # type: ignore[misc]
        def __init__(self) -> None:
            self._mutex = threading.Lock()
            # path -> [(offset, old bytes, old size)] since the last fsync (None offset: a truncate)
            self.undo: dict[str, list[tuple[int | None, bytes, int]]] = {}
            self.counters = {"writes": 0, "fsyncs": 0, "crashes": 0, "bytes_lost": 0}

        def _full(self, path: str) -> str:
            return os.path.join(backing, path.lstrip("/"))

        # ---- the rollback
        def crash(self) -> None:
            with self._mutex:
                for path, log in self.undo.items():
                    full = self._full(path)
                    try:
                        fd = os.open(full, os.O_WRONLY)
                    except OSError:
                        continue
                    try:
                        for offset, old, size in reversed(log):
                            if offset is None:
                                os.pwrite(fd, old, size - len(old))  # a truncate: put the tail back
                            else:
                                os.pwrite(fd, old, offset)
                            os.ftruncate(fd, size)
                            self.counters["bytes_lost"] += len(old)
                        os.fsync(fd)
                    finally:
                        os.close(fd)
                self.undo.clear()
                self.counters["crashes"] += 1

        def _remember_write(self, path: str, fd: int, offset: int, length: int) -> None:
            size = os.fstat(fd).st_size
            old = os.pread(fd, length, offset) if offset < size else b""
            self.undo.setdefault(path, []).append((offset, old, size))

        # ---- passthrough with undo logs
        def access(self, path: str, mode: int) -> None:
            if not os.access(self._full(path), mode):
                raise FuseOSError(errno.EACCES)

        def chmod(self, path: str, mode: int) -> None:
            os.chmod(self._full(path), mode)

        def chown(self, path: str, uid: int, gid: int) -> None:
            os.chown(self._full(path), uid, gid)

        def getattr(self, path: str, fh: int | None = None) -> dict[str, Any]:
            st = os.lstat(self._full(path))
            keys = ("st_atime", "st_ctime", "st_gid", "st_mode", "st_mtime", "st_nlink", "st_size", "st_uid")
            return {k: getattr(st, k) for k in keys}

        def readdir(self, path: str, fh: int) -> list[str]:
            return [".", "..", *os.listdir(self._full(path))]

        def mkdir(self, path: str, mode: int) -> None:
            os.mkdir(self._full(path), mode)

        def rmdir(self, path: str) -> None:
            os.rmdir(self._full(path))

        def unlink(self, path: str) -> None:
            with self._mutex:
                self.undo.pop(path, None)
            os.unlink(self._full(path))

        def rename(self, old: str, new: str) -> None:
            with self._mutex:
                log = self.undo.pop(old, None)
                if log is not None:
                    self.undo[new] = log
            os.rename(self._full(old), self._full(new))

        def utimens(self, path: str, times: tuple[float, float] | None = None) -> None:
            os.utime(self._full(path), times)

        def statfs(self, path: str) -> dict[str, Any]:
            st = os.statvfs(self._full(path))
            keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_flag",
                    "f_frsize", "f_namemax")  # fmt: skip
            return {k: getattr(st, k) for k in keys}

        def open(self, path: str, flags: int) -> int:
            return os.open(self._full(path), flags)

        def create(self, path: str, mode: int, fi: Any = None) -> int:
            return os.open(self._full(path), os.O_RDWR | os.O_CREAT, mode)

        def read(self, path: str, length: int, offset: int, fh: int) -> bytes:
            return os.pread(fh, length, offset)

        def write(self, path: str, data: bytes, offset: int, fh: int) -> int:
            with self._mutex:
                self._remember_write(path, fh, offset, len(data))
                self.counters["writes"] += 1
                return os.pwrite(fh, data, offset)

        def truncate(self, path: str, length: int, fh: int | None = None) -> None:
            full = self._full(path)
            with self._mutex:
                size = os.stat(full).st_size
                if length < size and size - length <= TAIL_MAX_BYTES:
                    with open(full, "rb") as f:
                        f.seek(length)
                        tail = f.read(size - length)
                    self.undo.setdefault(path, []).append((None, tail, size))
                elif length > size:
                    self.undo.setdefault(path, []).append((size, b"", size))
                os.truncate(full, length)

        def flush(self, path: str, fh: int) -> None:
            return None  # close-time flush is not a durability point

        def release(self, path: str, fh: int) -> None:
            os.close(fh)

        def fsync(self, path: str, datasync: int, fh: int) -> None:
            with self._mutex:
                if datasync:
                    os.fdatasync(fh)
                else:
                    os.fsync(fh)
                self.undo.pop(path, None)
                self.counters["fsyncs"] += 1

    ops = Lazy()

    def serve_control() -> None:
        if os.path.exists(control):
            os.unlink(control)
        os.mkfifo(control, 0o600)
        while True:
            with open(control, encoding="utf-8") as fifo:
                for line in fifo:
                    if line.strip() == "crash":
                        ops.crash()
                        tmp = control + ".ack.tmp"
                        with open(tmp, "w", encoding="utf-8") as out:
                            out.write(f"{ops.counters['crashes']} {ops.counters}\n")
                        os.replace(tmp, control + ".ack")

    threading.Thread(target=serve_control, name="control", daemon=True).start()
    FUSE(ops, mountpoint, foreground=True, nothreads=False, allow_other=True, default_permissions=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
