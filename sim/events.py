"""The event heap: integer virtual time in milliseconds, one total order of events.

Events are ``(time, seq, fn, args)``. ``seq`` is a global counter, so two events at the same
millisecond run in the order they were scheduled: the tie-break is deterministic and never
compares callables. Nothing here reads a clock; ``now`` only moves when an event is popped.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable
from typing import Any

Event = tuple[int, int, Callable[..., None], tuple[Any, ...]]


class EventQueue:
    __slots__ = ("now", "_heap", "_seq", "popped")

    def __init__(self) -> None:
        self.now = 0
        self._heap: list[Event] = []
        self._seq = 0
        self.popped = 0

    def at(self, time: int, fn: Callable[..., None], *args: Any) -> None:
        if time < self.now:
            time = self.now  # the past is closed: late events run now, after those already queued
        self._seq += 1
        heapq.heappush(self._heap, (time, self._seq, fn, args))

    def after(self, delay_ms: int, fn: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay_ms, fn, *args)

    def run_next(self, until: int) -> bool:
        """Run the next event if it is due by ``until``; False when there is none."""
        if not self._heap or self._heap[0][0] > until:
            return False
        time, _, fn, args = heapq.heappop(self._heap)
        self.now = time
        self.popped += 1
        fn(*args)
        return True

    def __len__(self) -> int:
        return len(self._heap)
