"""The Raft log as the core sees it: every entry's term, and the most recent entries in memory.

Index ``offset + 1`` is the first entry of the log; ``offset``/``offset_term`` describe the entry
just before it (0/0 for a log that starts at index 1; a snapshot later). The term of every entry
is kept (8 bytes each: matching, conflicts and commitment need only terms), but the entries
themselves only from ``cache_first`` on: a cache of the most recent ones, bounded by
``cache_budget`` bytes (None: unbounded). ``evict(limit)`` drops the oldest cached entries up to
``limit`` while over budget; the core passes ``min(stable, applied)``, so an entry leaves memory
only once it is durable and handed to the state machine, and what remains to be written or
applied is always at hand. A follower that needs older entries gets them from storage (the
driver reads them on its storage worker, see ``RaftCore.fetched``).

Entries with index <= ``stable`` are known to be on disk. Entries past ``in_progress`` are
handed to the driver by ``unstable()``; ``accept()`` records that the driver took them (its
storage worker is writing them: ``stable <= in_progress``), so they are not handed out twice,
and ``stable_to()`` marks them durable once the worker says so (asynchronous storage writes,
as in etcd-io/raft).
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence

from beaver_vault.errors import InvariantViolation
from beaver_vault.raft.messages import Entry


class RaftLog:
    def __init__(
        self, entries: Sequence[Entry] = (), offset: int = 0, offset_term: int = 0, cache_budget: int | None = None
    ) -> None:
        self.offset = offset
        self.offset_term = offset_term
        self.cache_budget = cache_budget
        for i, e in enumerate(entries):
            if e.index != offset + 1 + i:
                raise InvariantViolation(f"log entries not consecutive at {e.index}")
        self._terms = array("q", (e.term for e in entries))  # offset+1 .. last_index
        self._sizes = array("q", (e.size_bytes() for e in entries))
        self._cache: list[Entry] = list(entries)  # cache_first .. last_index
        self.cache_first = offset + 1
        self.cache_bytes = sum(self._sizes)
        self.log_bytes = self.cache_bytes  # sum(self._sizes): every entry after the offset
        self.stable = self.last_index  # whatever we are given was loaded from disk
        self.in_progress = self.stable  # handed to storage (being written), >= stable

    @property
    def entries(self) -> list[Entry]:
        """The cached entries (all of them unless some were evicted): from ``cache_first``."""
        return self._cache

    @property
    def first_index(self) -> int:
        return self.offset + 1

    @property
    def last_index(self) -> int:
        return self.offset + len(self._terms)

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
        return self._terms[index - self.offset - 1]

    def cached(self, index: int) -> bool:
        return self.cache_first <= index <= self.last_index

    def entry(self, index: int) -> Entry:
        if index < self.cache_first:
            raise InvariantViolation(f"entry {index} is not in memory (cached from {self.cache_first})")
        return self._cache[index - self.cache_first]

    def bytes_between(self, lo: int, hi: int) -> int:
        """``Entry.size_bytes()`` summed over the entries [lo, hi] (cached or not). Summed over
        the range or, when that is the longer part, taken from ``log_bytes`` less the rest: the
        compaction check asks for nearly the whole log after every apply."""
        lo, hi = max(lo, self.first_index), min(hi, self.last_index)
        if hi < lo:
            return 0
        a, b = lo - self.offset - 1, hi - self.offset
        if 2 * (b - a) <= len(self._sizes):
            return sum(self._sizes[a:b])
        return self.log_bytes - sum(self._sizes[:a]) - sum(self._sizes[b:])

    def matches(self, index: int, term: int) -> bool:
        if index > self.last_index or index < self.offset:
            return False
        return self.term(index) == term

    def slice(self, lo: int, hi: int, max_count: int, max_bytes: int) -> tuple[Entry, ...]:
        """Entries [lo, hi), at most ``max_count``, at most ``max_bytes`` (but at least one).
        ``lo`` must be cached (see ``cached``)."""
        hi = min(hi, self.last_index + 1, lo + max_count)
        out: list[Entry] = []
        size = 0
        for i in range(lo, hi):
            e = self.entry(i)
            size += e.size_bytes()
            if out and size > max_bytes:
                break
            out.append(e)
        return tuple(out)

    def append(self, entry: Entry) -> None:
        if entry.index != self.last_index + 1:
            raise InvariantViolation(f"append at {entry.index}, last is {self.last_index}")
        size = entry.size_bytes()
        self._terms.append(entry.term)
        self._sizes.append(size)
        self._cache.append(entry)
        self.cache_bytes += size
        self.log_bytes += size

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
        if index <= self.offset:
            raise InvariantViolation(f"truncating at {index}, inside the compacted prefix (offset {self.offset})")
        del self._terms[index - self.offset - 1 :]
        self.log_bytes -= sum(self._sizes[index - self.offset - 1 :])
        del self._sizes[index - self.offset - 1 :]
        if index >= self.cache_first:
            k = index - self.cache_first
            self.cache_bytes -= sum(e.size_bytes() for e in self._cache[k:])
            del self._cache[k:]
        else:
            # Only durable, applied (so committed) entries are evicted: never truncated.
            raise InvariantViolation(f"truncating at {index}, below the cached entries (from {self.cache_first})")
        self.stable = min(self.stable, index - 1)
        self.in_progress = min(self.in_progress, index - 1)

    def unstable(self) -> tuple[Entry, ...]:
        """Entries not yet handed to storage (always cached: only stable entries are evicted)."""
        return tuple(self._cache[self.in_progress + 1 - self.cache_first :])

    def accept(self, index: int) -> None:
        """The driver took the entries up to ``index`` to write them (not durable yet)."""
        self.in_progress = max(self.in_progress, min(index, self.last_index))

    def stable_to(self, index: int) -> None:
        self.stable = max(self.stable, min(index, self.last_index))
        self.in_progress = max(self.in_progress, self.stable)

    def evict(self, limit: int) -> int:
        """Over budget: drop the oldest cached entries, none past ``limit`` (<= stable), down to
        about nine tenths of the budget (so eviction runs in batches). Returns how many."""
        budget = self.cache_budget
        if budget is None or self.cache_bytes <= budget:
            return 0
        limit = min(limit, self.stable)
        target = budget - budget // 10
        k, freed = 0, 0
        n = min(limit - self.cache_first + 1, len(self._cache))
        while k < n and self.cache_bytes - freed > target:
            freed += self._cache[k].size_bytes()
            k += 1
        if k:
            del self._cache[:k]
            self.cache_first += k
            self.cache_bytes -= freed
        return k

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
        del self._terms[: index - self.offset]
        self.log_bytes -= sum(self._sizes[: index - self.offset])
        del self._sizes[: index - self.offset]
        if index >= self.cache_first:
            k = index - self.cache_first + 1
            self.cache_bytes -= sum(e.size_bytes() for e in self._cache[:k])
            del self._cache[:k]
            self.cache_first = index + 1
        self.offset, self.offset_term = index, term

    def reset_to(self, index: int, term: int) -> None:
        """Replace the whole log by a snapshot's position (a follower installing a snapshot)."""
        self._terms = array("q")
        self._sizes = array("q")
        self._cache = []
        self.cache_bytes = self.log_bytes = 0
        self.cache_first = index + 1
        self.offset, self.offset_term = index, term
        self.stable = self.in_progress = index
