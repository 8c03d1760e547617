"""Watches: the ordered stream of applied changes, per prefix, resumable by revision.

Every applied state change yields events (``kv.state.apply`` results carry ``"events"``), in
log order; a write's revision is its Raft index. The hub keeps the most recent events in a
history bounded by count (``history_max``) AND bytes (``history_bytes_max``: values up to
1 MiB make a count alone gigabytes) so a watcher can resume from the last revision it saw, with no gap and no
duplicate. Asking for a revision older than the history kept is refused (the client must
re-list and watch from the listing's revision). Each watcher has a bounded buffer: a watcher
that cannot keep up is closed with a reason instead of growing memory.

Pure (no Trio): the runtime wakes waiting tasks through ``Watcher.on_ready``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from beaver_vault.jsontext import compact_encoder

Event = dict[str, Any]
DEFAULT_BUFFER_BYTES = 8 * 1024 * 1024
DEFAULT_HISTORY_BYTES = 8 * 1024 * 1024  # as much as one watcher may have pending


def matches(ev: Event, prefix: str) -> bool:
    """Does ``ev`` concern a watcher of ``prefix``? A ``delete_prefix`` event (one event for a
    prefix delete of many keys, ``kv.state``) does when the two prefixes overlap."""
    key = str(ev["key"])
    if key.startswith(prefix):
        return True
    return ev.get("type") == "delete_prefix" and prefix.startswith(key)


_SIZE_JSON = compact_encoder(allow_nan=True)


def event_size(ev: Event) -> int:
    """Roughly the bytes the event costs a watcher (its key and JSON value), measured once. A
    string value (the usual kind) is counted by its UTF-8 length, without encoding it as JSON
    (escapes are left out: it is a bound on memory, not a wire size); a number, a boolean or
    null as a few bytes; anything else as its JSON text."""
    value = ev.get("value")
    size = 64 + len(str(ev.get("key", "")).encode("utf-8", "surrogatepass"))
    if value is None or isinstance(value, bool | int | float):
        return size + 24
    if isinstance(value, str):
        return size + 2 + len(value.encode("utf-8", "surrogatepass"))
    return size + len(_SIZE_JSON(value).encode("utf-8", "surrogatepass"))


class WatchCompacted(Exception):
    def __init__(self, requested: int, first_available: int) -> None:
        super().__init__(
            f"revision {requested} is older than the watch history kept here (first available: "
            f"{first_available}); re-list the keys and watch from the listing's revision"
        )
        self.requested = requested
        self.first_available = first_available


class Watcher:
    def __init__(
        self, hub: WatchHub, prefix: str, from_revision: int, buffer_max: int, bytes_max: int = DEFAULT_BUFFER_BYTES
    ) -> None:
        self.hub = hub
        self.prefix = prefix
        self.from_revision = from_revision
        self.buffer: deque[Event] = deque()
        self.buffer_max = buffer_max
        self.base_max = buffer_max
        self.buffer_bytes = 0
        self.bytes_max = bytes_max
        self.base_bytes_max = bytes_max
        self.closed_reason: str | None = None
        self.on_ready: Callable[[], None] | None = None

    def _push(self, ev: Event, size: int) -> None:
        if self.closed_reason is not None:
            return
        if ev["revision"] < self.from_revision or not matches(ev, self.prefix):
            return
        if len(self.buffer) >= self.buffer_max or (self.buffer and self.buffer_bytes + size > self.bytes_max):
            self.close("watcher fell behind: its buffer is full; reconnect from the last revision seen")
            return
        self.buffer.append(ev)
        self.buffer_bytes += size
        if self.on_ready is not None:
            self.on_ready()

    def take(self) -> list[Event]:
        out = list(self.buffer)
        self.buffer.clear()
        self.buffer_bytes = 0
        self.buffer_max = self.base_max  # the replayed backlog (if any) has been handed over
        self.bytes_max = self.base_bytes_max
        return out

    def close(self, reason: str = "closed") -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
            self.hub.watchers.discard(self)
            if self.on_ready is not None:
                self.on_ready()


class WatchHub:
    def __init__(
        self,
        applied_index: int,
        history_max: int = 10_000,
        watchers_max: int = 1_000,
        history_bytes_max: int = DEFAULT_HISTORY_BYTES,
    ) -> None:
        self.history: deque[Event] = deque()
        self.history_sizes: deque[int] = deque()  # event_size of each event in history
        self.history_bytes = 0
        self.history_max = history_max
        self.history_bytes_max = history_bytes_max
        self.watchers_max = watchers_max
        # Every event with revision >= first_retained is in ``history`` (nothing before start).
        self.first_retained = applied_index + 1
        self.applied_index = applied_index
        self.watchers: set[Watcher] = set()
        self.published = 0
        # Bumped whenever an auth record (user, role, token) is applied: a stream opened with
        # credentials re-checks them (``api/watch_routes.py``) before it sends anything more.
        self.auth_generation = 0

    def reset(self, applied_index: int) -> None:
        """The state was replaced (snapshot install, adoption): history no longer applies."""
        self.history.clear()
        self.history_sizes.clear()
        self.history_bytes = 0
        self.first_retained = applied_index + 1
        self.applied_index = applied_index
        for w in list(self.watchers):
            w.close("the node's state was replaced by a snapshot; re-list and watch again")

    def auth_changed(self) -> None:
        """An auth record was applied: bump ``auth_generation`` and wake every watcher, so a
        stream whose caller may have lost its access re-checks it now, not at its next event."""
        self.auth_generation += 1
        for w in list(self.watchers):
            if w.on_ready is not None:
                w.on_ready()

    def publish(self, revision: int, events: Iterable[Event]) -> None:
        self.applied_index = max(self.applied_index, revision)
        for ev in events:
            size = event_size(ev)
            self.history.append(ev)
            self.history_sizes.append(size)
            self.history_bytes += size
            self.published += 1
            while len(self.history) > self.history_max or (
                self.history_bytes > self.history_bytes_max and len(self.history) > 1
            ):
                dropped = self.history.popleft()
                self.history_bytes -= self.history_sizes.popleft()
                self.first_retained = dropped["revision"] + 1
            if self.watchers:
                for w in list(self.watchers):
                    w._push(ev, size)

    def subscribe(
        self, prefix: str, from_revision: int | None, buffer_max: int = 1_000, bytes_max: int = DEFAULT_BUFFER_BYTES
    ) -> Watcher:
        if len(self.watchers) >= self.watchers_max:
            raise OverflowError("too many watchers on this node")
        start = self.applied_index + 1 if from_revision is None else max(1, from_revision)
        if start < self.first_retained:
            raise WatchCompacted(start, self.first_retained)
        w = Watcher(self, prefix, start, buffer_max, bytes_max)
        # The replayed backlog is already in memory (bounded by history_max): let it exceed the
        # per-watcher limits once, so a watcher resuming from far back is not closed at once.
        w.buffer_max = len(self.history) + 1
        w.bytes_max = 2**62
        for ev, size in zip(self.history, self.history_sizes, strict=True):
            if ev["revision"] >= start and matches(ev, prefix):
                w._push(ev, size)
        w.buffer_max = buffer_max + len(w.buffer)
        w.bytes_max = bytes_max + w.buffer_bytes
        if w.closed_reason is None:
            self.watchers.add(w)
        return w
