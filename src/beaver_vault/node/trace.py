"""Write-path tracing for diagnosis: off unless the environment variable ``BV_TRACE_DIR`` names a
directory (then each process appends ``<dir>/trace.<pid>`` lines: ``<monotonic ns> <event> <fields>``).

``CLOCK_MONOTONIC`` is one clock for every process of a machine, so the files of a local
3-node cluster merge into one timeline (``bench/trace_write.py`` does that and prints where a
write's time goes). When off, ``mark`` is one global lookup and a return, and it never changes
what the code does. Only the Trio shell (``runtime.py``: the worker thread, inbound and outbound
messages through ``TracingTransport``, proposals and answers) marks; the driver stays free of I/O
(``tests/test_layering.py``).
"""

from __future__ import annotations

import os
import time
from typing import Any

_fd: int | None = None
_dir = os.environ.get("BV_TRACE_DIR")
if _dir:
    _fd = os.open(os.path.join(_dir, f"trace.{os.getpid()}"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)


def on() -> bool:
    return _fd is not None


def mark(event: str, *fields: object) -> None:
    """One line, one ``write`` (atomic with O_APPEND: the worker thread may write at once)."""
    if _fd is None:
        return
    line = f"{time.monotonic_ns()} {event} {' '.join(str(f) for f in fields)}\n"
    os.write(_fd, line.encode())


def describe(msg: object) -> tuple[object, ...]:
    """The fields of a message that matter for a write's timeline."""
    name = type(msg).__name__
    src, dst = getattr(msg, "src", "?"), getattr(msg, "dst", "?")
    entries = getattr(msg, "entries", None)
    if entries is not None:
        last = entries[-1].index if entries else "-"
        return (name, src, dst, len(entries), last, getattr(msg, "commit", "?"))
    return (name, src, dst, getattr(msg, "match_index", getattr(msg, "success", "")))


class TracingTransport:
    """Marks every message the driver sends, then hands it on."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def send(self, msg: Any) -> None:
        mark("send", *describe(msg))
        self.inner.send(msg)

    def set_peers(self, addresses: Any) -> None:
        self.inner.set_peers(addresses)

    def set_cluster_id(self, cluster_id: str | None) -> None:
        self.inner.set_cluster_id(cluster_id)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
