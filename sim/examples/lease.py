"""Leader election with a lease: compare-and-set plus a TTL, as etcd/Consul locks are used.

``python -m sim --workload sim/examples/lease.py --seeds 0..19``

One key, ``lease``, names the holder. A client that sees no holder tries to take the lease with
``cas(lease, None, me, ttl_ms=TTL_MS)`` (the key must be absent); the holder renews it with
``cas(lease, me, me, ttl_ms=TTL_MS)`` well before it runs out, and otherwise does its "work"
(sleeps). The cluster's own rule for a lease: the leader stamps ``expires_at = its clock +
TTL_MS`` into the write, and only deletes the key (through the log) once its clock has passed
that; the simulated clock is the leader's clock.

What a client may believe: its lease is its own from the moment the cas is answered ``ok``
until ``TTL_MS`` after it SENT the request (the stamp cannot be earlier than the send). An
answer ``unknown`` or ``fail`` gives it nothing new.

Invariant (``check``): no two clients ever believed they held the lease at the same moment.
``lease_broken.py`` counts the TTL from the answer instead of the request, which a slow answer
(a partition, a crash, a retry) turns into two holders; its check catches that.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from sim.workload_api import Client, OpRecord, Steps

Interval = tuple[int, int, "int | str"]  # (start ms, end ms, holder)

KEY = "lease"
TTL_MS = 600
RENEW_BEFORE_MS = 300  # renew this long before the believed end
CLIENTS = 4
OPS = 300


def client(c: Client, i: int, rng: random.Random) -> Steps:
    return elect(c, i, rng, from_request=True)


def elect(c: Client, i: int, rng: random.Random, from_request: bool) -> Steps:
    me = f"client-{i}"
    until: int | None = None  # the end of the lease this client believes it holds
    while True:
        now = c.now_ms
        if until is not None and now >= until:
            until = None  # lapsed: it holds nothing any more
        if until is None:
            sent = c.now_ms
            r = yield c.cas(KEY, None, me, ttl_ms=TTL_MS)
            if r.ok:
                until = (sent if from_request else c.now_ms) + TTL_MS
            else:
                yield c.sleep(rng.randint(50, 200))
            continue
        if now < until - RENEW_BEFORE_MS:
            yield c.sleep(min(until - RENEW_BEFORE_MS - now, rng.randint(20, 100)))  # "work"
            continue
        sent = c.now_ms
        r = yield c.cas(KEY, me, me, ttl_ms=TTL_MS)
        if r.ok:
            until = (sent if from_request else c.now_ms) + TTL_MS
        elif r.status == "fail":
            until = None  # someone else holds it now (ours expired): stop believing at once


def believed(ops: Sequence[OpRecord], from_request: bool = True) -> list[Interval]:
    """(start, end, holder) of every lease a client believed it held, from the operations."""
    out = []
    for op in ops:
        if op.f == "cas" and op.key == KEY and op.ttl_ms and op.result.ok:
            end = (op.start_ms if from_request else op.end_ms) + op.ttl_ms
            out.append((op.end_ms, end, op.process))
    return out


def overlap(intervals: list[Interval]) -> tuple[Interval, Interval] | None:
    """The first two intervals of different holders that overlap in time, or None."""
    intervals = sorted(intervals)
    for n, (s1, e1, h1) in enumerate(intervals):
        for s2, e2, h2 in intervals[n + 1 :]:
            if s2 >= e1:
                break
            if h1 != h2 and s2 < e1 and s1 < e2:
                return (s1, e1, h1), (s2, e2, h2)
    return None


def check(ops: Sequence[OpRecord]) -> str | None:
    found = overlap(believed(ops, from_request=True))
    if found is None:
        return None
    (s1, e1, h1), (s2, e2, h2) = found
    return f"two holders: client {h1} believed it held the lease {s1}..{e1} ms and client {h2} {s2}..{e2} ms"


def state_invariant(state: Mapping[str, Any]) -> str | None:
    holder = state.get(KEY)
    if holder is not None and not (isinstance(holder, str) and holder.startswith("client-")):
        return f"the lease holds {holder!r}"
    return None
