"""Client outcomes: one ``Waiter`` per operation, and the tables that resolve them.

Outcome rules for a proposal at (index, term):
* the entry applied at that index has that term: it happened; the result is returned;
* a different entry was applied at that index: it certainly did not happen
  (``SupersededByLeader``);
* the caller gave up first (timeout, lost leadership with no answer yet): unknown.
Leadership loss alone never fails a proposal: a new leader may still commit it.

A linearizable read waits twice: for the core to confirm its read index (by ``ctx``), then for
this node to have applied up to that index; it resolves with the applied index. A read the
core dropped (leadership lost first) fails with ``NoLeader``: nothing was changed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from beaver_vault.errors import BeaverVaultError, NoLeader, SupersededByLeader
from beaver_vault.raft.messages import Entry, EntryKind, Membership, ReadState


class Waiter:
    """One client operation's future outcome. ``on_done`` is set by the owner (an Event.set in
    the Trio runtime, a callback in the simulator) and called exactly once."""

    __slots__ = ("done", "result", "error", "on_done", "kind", "index", "term", "size")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.done = False
        self.result: Any = None
        self.error: BeaverVaultError | None = None
        self.on_done: Callable[[], None] | None = None
        self.index = 0
        self.term = 0
        self.size = 0  # bytes of the proposed command (counted against max_pending_bytes)

    def _finish(self, result: Any = None, error: BeaverVaultError | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.result = result
        self.error = error
        if self.on_done is not None:
            self.on_done()


class Outcomes:
    """The waiters of proposals, membership changes and reads, until each is resolved."""

    def __init__(self) -> None:
        self.proposals: dict[int, Waiter] = {}  # index -> waiter
        self.config_waits: dict[int, Waiter] = {}  # config entry index -> waiter
        self.reads: dict[int, Waiter] = {}  # ctx -> waiter, until confirmed
        self.read_waits: list[tuple[int, Waiter]] = []  # (read index, waiter), until applied
        self.proposal_bytes = 0  # commands of the proposals waiting (``max_pending_bytes``)

    def in_flight(self) -> int:
        """Operations counted against ``DriverOptions.max_pending``."""
        return len(self.proposals) + len(self.reads) + len(self.read_waits)

    def add_proposal(self, index: int, w: Waiter) -> None:
        self.proposals[index] = w
        self.proposal_bytes += w.size

    def applied(self, e: Entry, result: dict[str, Any] | None, membership: Callable[[], Membership]) -> None:
        """Resolve the proposal or membership change waiting at ``e.index`` (``membership``:
        the configuration now in force, the answer to a change that was not a config entry)."""
        w = self.proposals.pop(e.index, None)
        if w is not None:
            self.proposal_bytes -= w.size
            if w.term == e.term:
                w._finish(result)
            else:
                w._finish(error=SupersededByLeader(e.index, w.term))
        cw = self.config_waits.pop(e.index, None)
        if cw is not None:
            if cw.term == e.term:
                cw._finish(membership() if e.kind != EntryKind.CONFIG else Membership.decode(e.data))
            else:
                cw._finish(error=SupersededByLeader(e.index, cw.term, config=True))

    def read_index_known(self, read_states: tuple[ReadState, ...], dropped: tuple[int, ...]) -> None:
        for rs in read_states:
            w = self.reads.pop(rs.ctx, None)
            if w is not None:
                self.read_waits.append((rs.index, w))
        for ctx in dropped:
            w = self.reads.pop(ctx, None)
            if w is not None:
                w._finish(error=NoLeader("leadership lost before the read was confirmed"))

    def release_reads(self, applied_index: int) -> None:
        """Answer the reads whose read index is applied."""
        if not self.read_waits:
            return
        keep = []
        for idx, w in self.read_waits:
            if idx <= applied_index:
                w._finish(applied_index)
            else:
                keep.append((idx, w))
        self.read_waits = keep

    def forget(self, w: Waiter) -> None:
        """The caller stopped waiting for ``w``."""
        if w.kind == "write" and self.proposals.get(w.index) is w:
            del self.proposals[w.index]
            self.proposal_bytes -= w.size
        for ctx, rw in list(self.reads.items()):
            if rw is w:
                del self.reads[ctx]
        self.read_waits = [(i, rw) for i, rw in self.read_waits if rw is not w]
        for idx, cw in list(self.config_waits.items()):
            if cw is w:
                del self.config_waits[idx]
