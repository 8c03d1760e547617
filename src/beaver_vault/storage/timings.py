"""Duration histograms kept by the code that does the work, exported by ``api/metrics.py``.

Theory of operation: a :class:`Durations` is a fixed set of cumulative-free bucket counters
plus a sum and a count (what a Prometheus histogram needs), updated with one ``observe`` per
operation: no lock, no allocation, no dependency on prometheus-client (the storage and the
runtime record; only the API knows the exposition format). Increments from a second thread
(the storage worker) can race with a scrape by one observation at most, which a histogram
tolerates.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, field

# Seconds: from a fast fsync (~0.1 ms here) to a stalled event loop.
BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)


@dataclass(slots=True)
class Durations:
    doc: str
    buckets: tuple[float, ...] = BUCKETS_S
    counts: list[int] = field(default_factory=list)  # per bucket (not cumulative), + one for +Inf
    total_s: float = 0.0
    count: int = 0

    def __post_init__(self) -> None:
        self.counts = [0] * (len(self.buckets) + 1)

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, seconds)] += 1
        self.total_s += seconds
        self.count += 1

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, cumulative count)`` pairs, ending with ``+Inf``."""
        out: list[tuple[str, int]] = []
        running = 0
        for bound, n in zip((*(repr(b) for b in self.buckets), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out

    def quantile(self, q: float) -> float:
        """The upper bound of the bucket holding the ``q`` quantile (inf past the last)."""
        if self.count == 0:
            return 0.0
        target = q * self.count
        running = 0
        for i, n in enumerate(self.counts):
            running += n
            if running >= target:
                return self.buckets[i] if i < len(self.buckets) else float("inf")
        return float("inf")


@dataclass(slots=True)
class StorageTimings:
    """What the storage times: each durable commit (its fsync), each apply batch, each
    compaction step (recording the snapshot position, and each batch of log rows deleted)."""

    fsync: Durations = field(default_factory=lambda: Durations("Durable log writes (append + hard state, with fsync)"))
    apply: Durations = field(default_factory=lambda: Durations("Applying a batch of committed entries"))
    compaction: Durations = field(
        default_factory=lambda: Durations("Compaction steps (snapshot position, batches of old log rows deleted)")
    )
