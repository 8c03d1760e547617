"""Per-second statistics of one node over the last minutes, for the operator's console.

Theory of operation: :class:`RequestStats` is fed by ``ApiMetrics.observe`` (every request
the API answers, the fast path's included) and accumulates the current second: writes and
reads answered by this node, server errors, and a latency histogram per kind (fixed
log-scale buckets, so memory does not grow with the load). Once a second the sampler task
(:meth:`StatsSampler.run`, started when the app starts serving) closes the second into a
:class:`Sample` with the node's role, term and leader, the entries applied in that second
(every node applies every committed entry, so this is the cluster's write rate as seen
here) and, on the leader, the replication lag of each follower (entries behind the
leader's last index). Samples go into a ring buffer of ``window_s`` seconds.

Nothing here blocks or waits: ``observe`` is a few integer operations, and the sample is
taken from the runtime's local, synchronous views.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import trio

from beaver_vault.errors import BeaverVaultError
from beaver_vault.node.runtime import NodeRuntime

WINDOW_S = 300
INTERVAL_S = 1.0
# Latency buckets: upper bounds growing by 15 % from 50 us to about 2 minutes.
_BUCKET_BASE_S = 50e-6
_BUCKET_GROWTH = 1.15
_BUCKETS = 1 + math.ceil(math.log(120.0 / _BUCKET_BASE_S) / math.log(_BUCKET_GROWTH))
BUCKET_BOUNDS_S = tuple(_BUCKET_BASE_S * _BUCKET_GROWTH**i for i in range(_BUCKETS))
_LOG_GROWTH = math.log(_BUCKET_GROWTH)

WRITE_ROUTES = frozenset({"/api/v1/kv/<key:key>", "/api/v1/kv", "/api/v1/txn"})
READ_ROUTES = frozenset({"/api/v1/kv/<key:key>", "/api/v1/kv"})
WRITE_METHODS = frozenset({"PUT", "DELETE", "POST"})


def bucket_of(elapsed_s: float) -> int:
    if elapsed_s <= _BUCKET_BASE_S:
        return 0
    return min(_BUCKETS - 1, math.ceil(math.log(elapsed_s / _BUCKET_BASE_S) / _LOG_GROWTH))


def percentile_ms(counts: list[int], total: int, q: float) -> float | None:
    """The upper bound (ms) of the bucket holding the ``q`` quantile; None without samples."""
    if total <= 0:
        return None
    rank = max(1, math.ceil(q * total))
    seen = 0
    for i, n in enumerate(counts):
        seen += n
        if seen >= rank:
            return round(BUCKET_BOUNDS_S[i] * 1000, 3)
    return round(BUCKET_BOUNDS_S[-1] * 1000, 3)


@dataclass(slots=True)
class _Second:
    writes: int = 0
    reads: int = 0
    errors: int = 0
    write_hist: list[int] = field(default_factory=lambda: [0] * _BUCKETS)
    read_hist: list[int] = field(default_factory=lambda: [0] * _BUCKETS)


class RequestStats:
    """The requests of the current second (fed by ``ApiMetrics.observe``)."""

    def __init__(self) -> None:
        self.current = _Second()

    def observe(self, route: str, method: str, status: int, elapsed_s: float) -> None:
        cur = self.current
        if status >= 500:
            cur.errors += 1
        if method in WRITE_METHODS and route in WRITE_ROUTES:
            cur.writes += 1
            cur.write_hist[bucket_of(elapsed_s)] += 1
        elif method == "GET" and route in READ_ROUTES:
            cur.reads += 1
            cur.read_hist[bucket_of(elapsed_s)] += 1

    def take(self) -> _Second:
        done, self.current = self.current, _Second()
        return done


@dataclass(frozen=True, slots=True)
class Sample:
    t_ms: int  # wall-clock end of the second
    writes: int  # HTTP writes answered by this node
    reads: int  # HTTP reads answered by this node
    errors: int  # HTTP answers >= 500 from this node
    applied: int  # entries applied here in that second (the cluster's commit rate)
    write_p50_ms: float | None
    write_p99_ms: float | None
    read_p50_ms: float | None
    read_p99_ms: float | None
    role: str
    term: int
    leader: str | None
    lag: dict[str, int]  # leader only: follower id -> entries behind

    def to_json(self) -> dict[str, Any]:
        return {
            "t_ms": self.t_ms,
            "writes": self.writes,
            "reads": self.reads,
            "errors": self.errors,
            "applied": self.applied,
            "write_p50_ms": self.write_p50_ms,
            "write_p99_ms": self.write_p99_ms,
            "read_p50_ms": self.read_p50_ms,
            "read_p99_ms": self.read_p99_ms,
            "role": self.role,
            "term": self.term,
            "leader": self.leader,
            "lag": self.lag,
        }


class StatsSampler:
    """Closes one second of :class:`RequestStats` into a :class:`Sample` every second."""

    def __init__(self, runtime: NodeRuntime, requests: RequestStats, *, window_s: int = WINDOW_S) -> None:
        self.runtime = runtime
        self.requests = requests
        self.window_s = window_s
        self.samples: deque[Sample] = deque(maxlen=window_s)
        self._last_applied: int | None = None
        self._scope: trio.CancelScope | None = None
        self._stopped = False

    def sample(self) -> Sample:
        second = self.requests.take()
        rt = self.runtime
        st = rt.status()
        applied_now = rt.applied_index()
        applied = 0 if self._last_applied is None else max(0, applied_now - self._last_applied)
        self._last_applied = applied_now
        lag: dict[str, int] = {}
        if st.role == "leader":
            try:
                for n in rt.nodes():
                    if n.get("id") != st.node_id and isinstance(n.get("lag"), int):
                        lag[str(n["id"])] = int(n["lag"])
            except BeaverVaultError:
                pass  # lost leadership in between: no lag this second
        s = Sample(
            t_ms=rt.now_ms(),
            writes=second.writes,
            reads=second.reads,
            errors=second.errors,
            applied=applied,
            write_p50_ms=percentile_ms(second.write_hist, second.writes, 0.50),
            write_p99_ms=percentile_ms(second.write_hist, second.writes, 0.99),
            read_p50_ms=percentile_ms(second.read_hist, second.reads, 0.50),
            read_p99_ms=percentile_ms(second.read_hist, second.reads, 0.99),
            role=st.role,
            term=st.term,
            leader=st.leader_id,
            lag=lag,
        )
        self.samples.append(s)
        return s

    def to_json(self, after_ms: int | None = None) -> dict[str, Any]:
        samples = [s.to_json() for s in self.samples if after_ms is None or s.t_ms > after_ms]
        return {
            "node_id": self.runtime.node_id,
            "interval_s": INTERVAL_S,
            "window_s": self.window_s,
            "samples": samples,
        }

    async def run(self) -> None:
        """Sample once a second (on trio's clock) until :meth:`stop`."""
        with trio.CancelScope() as scope:
            self._scope = scope
            if self._stopped:
                return
            self._last_applied = self.runtime.applied_index()
            next_at = trio.current_time() + INTERVAL_S
            while True:
                await trio.sleep_until(next_at)
                self.sample()
                next_at = max(next_at + INTERVAL_S, trio.current_time())

    def stop(self) -> None:
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()
