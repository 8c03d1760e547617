"""The Raft log as the core sees it: a durable prefix and an unstable tail, in memory.

``entries[i]`` has index ``offset + 1 + i``; ``offset``/``offset_term`` describe the entry just
before the first one held (0/0 for a log that starts at index 1; a snapshot later). Entries with
index <= ``stable`` are known to be on disk. Entries past ``in_progress`` are handed to the driver
by ``unstable()``; ``accept()`` records that the driver took them (its storage worker is writing
them: ``stable <= in_progress``), so they are not handed out twice, and ``stable_to()`` marks them
durable once the worker says so (asynchronous storage writes, as in etcd-io/raft).
"""

from __future__ import annotations

from collections.abc import Sequence

from beaver_vault.errors import InvariantViolation
from beaver_vault.raft.messages import Entry


class RaftLog:
    def __init__(self, entries: Sequence[Entry] = (), offset: int = 0, offset_term: int = 0) -> None:
        self.offset = offset
        self.offset_term = offset_term
        self.entries: list[Entry] = list(entries)
        for i, e in enumerate(self.entries):
            if e.index != offset + 1 + i:
                raise InvariantViolation(f"log entries not consecutive at {e.index}")
        self.stable = self.last_index  # whatever we are given was loaded from disk
        self.in_progress = self.stable  # handed to storage (being written), >= stable

    @property
    def first_index(self) -> int:
        return self.offset + 1

    @property
    def last_index(self) -> int:
        return self.offset + len(self.entries)

    @property
    def last_term(self) -> int:
        return self.term(self.last_index)

    def term(self, index: int) -> int:
        """Term of the entry at ``index``; 0 beyond the end; raises below the compacted prefix."""
        if index == self.offset:
            return self.offset_term
        if index < self.offset:
            raise InvariantViolation(f"term of compacted index {index} (offset {self.offset})")
        if index > self.last_index:
            return 0
        return self.entries[index - self.offset - 1].term

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.offset - 1]

    def matches(self, index: int, term: int) -> bool:
        if index > self.last_index or index < self.offset:
            return False
        return self.term(index) == term

    def slice(self, lo: int, hi: int, max_count: int, max_bytes: int) -> tuple[Entry, ...]:
        """Entries [lo, hi), at most ``max_count``, at most ``max_bytes`` (but at least one)."""
        hi = min(hi, self.last_index + 1, lo + max_count)
        out: list[Entry] = []
        size = 0
        for i in range(lo, hi):
            e = self.entries[i - self.offset - 1]
            size += e.size_bytes()
            if out and size > max_bytes:
                break
            out.append(e)
        return tuple(out)

    def append(self, entry: Entry) -> None:
        if entry.index != self.last_index + 1:
            raise InvariantViolation(f"append at {entry.index}, last is {self.last_index}")
        self.entries.append(entry)

    def merge(self, entries: Sequence[Entry]) -> int:
        """Follower side: add ``entries`` (which follow a matching prev), truncating the suffix
        from the first conflict. Returns the index of the first entry written (0 if none)."""
        for k, e in enumerate(entries):
            if e.index <= self.offset:
                continue  # already compacted, hence committed, hence equal
            if e.index <= self.last_index:
                if self.term(e.index) == e.term:
                    continue
                self.truncate_from(e.index)
            for rest in entries[k:]:
                self.append(rest)
            return e.index
        return 0

    def truncate_from(self, index: int) -> None:
        del self.entries[index - self.offset - 1 :]
        self.stable = min(self.stable, index - 1)
        self.in_progress = min(self.in_progress, index - 1)

    def unstable(self) -> tuple[Entry, ...]:
        """Entries not yet handed to storage."""
        return tuple(self.entries[self.in_progress - self.offset :])

    def accept(self, index: int) -> None:
        """The driver took the entries up to ``index`` to write them (not durable yet)."""
        self.in_progress = max(self.in_progress, min(index, self.last_index))

    def stable_to(self, index: int) -> None:
        self.stable = max(self.stable, min(index, self.last_index))
        self.in_progress = max(self.in_progress, self.stable)

    def find_conflict_hint(self, index: int, term: int) -> int:
        """Largest index <= ``index`` whose term is <= ``term`` (fast backtracking)."""
        i = min(index, self.last_index)
        while i > self.offset and self.term(i) > term:
            i -= 1
        return i

    def compact(self, index: int) -> None:
        """Forget entries up to ``index`` (they are in a snapshot now)."""
        if index <= self.offset:
            return
        if index > self.stable:
            raise InvariantViolation(f"compacting {index} beyond the stable index {self.stable}")
        term = self.term(index)
        del self.entries[: index - self.offset]
        self.offset, self.offset_term = index, term

    def reset_to(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot's position (a follower installing a snapshot)."""
        self.entries = []
        self.offset, self.offset_term = index, term
        self.stable = self.in_progress = index
