"""Deadlines of forwarded requests: a leader never appends a write its follower gave up on.

Theory of operation. A follower forwards a write to the leader and answers its client
``unknown`` when the leader has not answered within ``forward_timeout_s``. Without a deadline
the request could still reach the leader afterwards (bytes stuck in TCP retransmission during
a partition, or sitting in the receive buffer of a leader that was stopped) and be applied
seconds after the client was told "unknown", after newer acknowledged writes. So "unknown"
should mean "it happened before the answer, or never", as closely as Raft allows (an entry
appended before the answer may still commit after it; that cannot be undone).

Two mechanisms, each covering what the other cannot:

* **The follower closes abortively** (``forward.py``: ``SO_LINGER`` 0 on every forwarding
  connection). Closing a connection after a timeout sends RST and throws away whatever the
  kernel still had queued, so retransmitted bytes are never delivered once a partition heals.
  This needs no clock.
* **The request carries its deadline** (this module). The follower stamps its wall clock at
  sending (``X-Beaver-Vault-Sent-At-Ms``) and the budget the leader has from then
  (``X-Beaver-Vault-Budget-Ms``, shorter than the follower's own wait by a margin). The leader
  refuses to start a write past that deadline with 503 ``not_applied``; this covers bytes that
  were already in the leader's receive buffer (a stopped leader reads them after SIGCONT,
  whatever the follower did meanwhile).

Clock skew. The leader converts the follower's deadline into its own clock with an estimate of
the offset between the two wall clocks: per sender, the minimum over recent requests of
``received_at(leader clock) - sent_at(follower clock)``, i.e. offset plus the smallest delay
seen (the filter NTP uses). A delayed request does not lower that minimum, so it is judged
late. The estimate errs towards leniency only by the smallest delay seen, and for the first
request from a sender (no earlier sample) or just after its clock jumped forward; it errs
towards strictness (a spurious ``not_applied``, never a wrong answer) after the sender's clock
jumped backwards, until old samples leave the window (``WINDOW_S``). The deadline is also
never later than ``arrival + budget`` on the leader's monotonic clock.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from beaver_vault.errors import BeaverVaultError

SENT_AT_HEADER = "X-Beaver-Vault-Sent-At-Ms"
BUDGET_HEADER = "X-Beaver-Vault-Budget-Ms"
WINDOW_S = 10.0  # how long an offset sample counts
SAMPLES_MAX = 32  # samples kept per sender
SENDERS_MAX = 256  # senders tracked (members); the oldest is forgotten beyond this
BUDGET_MAX_MS = 2 * 3600 * 1000  # a join waits for its node's catch-up (api join_wait_s)


class DeadlinePassed(BeaverVaultError):
    """A forwarded request arrived after its sender gave up: not started (``not_applied``)."""


def budget_ms(forward_timeout_s: float) -> int:
    """The leader's share of a forwarding timeout: it must give up before the follower does."""
    margin_s = min(0.5, forward_timeout_s / 4)
    return max(1, int((forward_timeout_s - margin_s) * 1000))


def stamp(headers: dict[str, str], forward_timeout_s: float, wall_ms: Callable[[], int]) -> None:
    """Add the deadline headers to a request about to be forwarded."""
    headers[SENT_AT_HEADER] = str(wall_ms())
    headers[BUDGET_HEADER] = str(budget_ms(forward_timeout_s))


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class DeadlineBook:
    """The leader's side: per-sender offset estimates and the local deadline of a request."""

    def __init__(
        self,
        *,
        wall_ms: Callable[[], int] = _wall_ms,
        monotonic_s: Callable[[], float] = time.monotonic,
    ) -> None:
        self._wall_ms = wall_ms
        self._monotonic_s = monotonic_s
        self._samples: dict[str, deque[tuple[float, int]]] = {}
        self.refused = 0  # requests refused because their deadline had passed

    def deadline(self, sender: str, sent_at_text: str | None, budget_text: str | None) -> float | None:
        """The local monotonic time after which a request forwarded by ``sender`` with these
        header values must not start, or None (no or malformed deadline headers)."""
        try:
            sent_at = int(sent_at_text or "")
            budget = int(budget_text or "")
        except ValueError:
            return None  # an older node, or a request not forwarded: no deadline
        budget = min(max(budget, 0), BUDGET_MAX_MS)
        now_wall, now_mono = self._wall_ms(), self._monotonic_s()
        offset = self._observe(sender, now_mono, now_wall - sent_at)
        remaining_ms = min(sent_at + offset + budget - now_wall, budget)
        return now_mono + remaining_ms / 1000

    def _observe(self, sender: str, now_mono: float, sample_ms: int) -> int:
        book = self._samples.get(sender)
        if book is None:
            if len(self._samples) >= SENDERS_MAX:
                del self._samples[next(iter(self._samples))]
            book = self._samples[sender] = deque(maxlen=SAMPLES_MAX)
        while book and book[0][0] < now_mono - WINDOW_S:
            book.popleft()
        book.append((now_mono, sample_ms))
        return min(s for _, s in book)

    def check(self, deadline: float | None) -> None:
        """Raise ``DeadlinePassed`` if ``deadline`` (from :meth:`deadline`) has passed."""
        if deadline is not None and self._monotonic_s() > deadline:
            self.refused += 1
            raise DeadlinePassed("the forwarding node gave up on this request before it could start: not applied")


async def guarded(book: DeadlineBook, deadline: float | None, call: Awaitable[Any]) -> Any:
    """Await ``call`` unless ``deadline`` has passed (then close it unstarted and refuse)."""
    try:
        book.check(deadline)
    except DeadlinePassed:
        close = getattr(call, "close", None)
        if close is not None:
            close()  # a coroutine never started: nothing was proposed
        raise
    return await call
