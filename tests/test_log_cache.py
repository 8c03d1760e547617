"""The in-memory Raft log as a byte-bounded cache (``raft/log.py``; issue 9, item 2)."""

from __future__ import annotations

import pytest

from beaver_vault.errors import InvariantViolation
from beaver_vault.raft.log import RaftLog
from beaver_vault.raft.messages import Entry


def E(index: int, term: int = 1, size: int = 76) -> Entry:
    return Entry(term, index, data=b"x" * size)  # size_bytes() = size + 24


def test_eviction_keeps_the_newest_entries_within_the_budget_and_every_term() -> None:
    log = RaftLog([E(i, term=1 + i // 5) for i in range(1, 21)], cache_budget=1000)  # 20 x 100 bytes
    assert log.cache_bytes == 2000
    assert log.evict(limit=20) > 0
    assert log.cache_bytes <= 1000
    assert log.cache_first > 1 and log.entries[-1].index == 20
    assert [log.term(i) for i in range(1, 21)] == [1 + i // 5 for i in range(1, 21)]  # terms stay
    assert not log.cached(1) and log.cached(20)
    with pytest.raises(InvariantViolation):
        log.entry(1)
    assert log.bytes_between(1, 20) == 2000  # sizes stay too
    assert log.matches(3, 1) and log.find_conflict_hint(20, 2) == 9


def test_only_entries_up_to_the_limit_and_the_stable_index_leave() -> None:
    log = RaftLog([E(i) for i in range(1, 11)], cache_budget=0)
    log.append(E(11))  # not durable yet
    assert log.stable == 10
    log.evict(limit=6)
    assert log.cache_first == 7  # the limit (the applied index, in the core)
    log.evict(limit=100)
    assert log.cache_first == 11  # the stable index: entry 11 is still to be written
    assert log.unstable() == (E(11),)


def test_unbounded_by_default() -> None:
    log = RaftLog([E(i) for i in range(1, 11)])
    assert log.evict(limit=10) == 0 and log.cache_first == 1


def test_compaction_truncation_and_reset_keep_the_cache_consistent() -> None:
    log = RaftLog([E(i) for i in range(1, 11)], cache_budget=500)
    log.evict(limit=10)
    first = log.cache_first
    log.compact(3)  # below the cached part
    assert (log.offset, log.cache_first, log.first_index) == (3, first, 4)
    log.compact(first + 1)  # into the cached part
    assert log.cache_first == first + 2 and log.entries[0].index == first + 2
    log.truncate_from(10)
    assert log.last_index == 9 and log.entries[-1].index == 9
    assert log.cache_bytes == sum(e.size_bytes() for e in log.entries)
    with pytest.raises(InvariantViolation):
        log.truncate_from(log.offset)  # never inside the compacted prefix
    log.reset_to(50, 4)
    assert (log.first_index, log.last_index, log.cache_first, log.cache_bytes) == (51, 50, 51, 0)
    log.append(E(51, 4))
    assert log.entry(51) == E(51, 4)


def test_bytes_between_agrees_with_summing_the_entries_through_appends_truncations_compactions() -> None:
    """``bytes_between`` takes a long range from the running total (``log_bytes``) less the
    rest; against the plain sum of the entries' sizes, after every change of the log."""
    import random

    rng = random.Random(11)
    sizes: dict[int, int] = {}
    log = RaftLog([], cache_budget=300)
    for step in range(400):
        what = rng.random()
        if what < 0.6 or log.last_index == log.offset:
            e = E(log.last_index + 1, size=rng.randrange(0, 90))
            log.append(e)
            sizes[e.index] = e.size_bytes()
        elif what < 0.75 and max(log.offset + 1, log.cache_first) <= log.last_index:
            at = rng.randrange(max(log.offset + 1, log.cache_first), log.last_index + 1)
            log.truncate_from(at)
            sizes = {i: n for i, n in sizes.items() if i < at}
        elif what < 0.85:
            log.stable_to(log.last_index)
            log.compact(rng.randrange(log.offset, log.last_index + 1))
        elif what < 0.95:
            log.stable_to(log.last_index)
            log.evict(limit=log.last_index)
        else:
            log.reset_to(log.last_index + rng.randrange(0, 5), 1)
            sizes = {}
        live = {i: n for i, n in sizes.items() if i > log.offset}
        assert log.log_bytes == sum(live.values()), step
        for _ in range(5):
            lo, hi = rng.randrange(log.offset - 2, log.last_index + 3), rng.randrange(log.offset - 2, log.last_index + 3)
            assert log.bytes_between(lo, hi) == sum(n for i, n in live.items() if lo <= i <= hi), (step, lo, hi)
