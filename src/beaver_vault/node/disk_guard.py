"""What the node does when its disk refuses a write (full, or an I/O error): it stops, says
why, keeps serving what it can, and comes back by itself. Part of the synchronous driver.

Theory of operation. The storage turns a full disk or an I/O error into ``StorageFailure``
after rolling its transaction back (``storage/disk_errors.py``). The driver hands that to
:meth:`DiskGuard.failed` (the one hook, called where a Ready or an inbound message met the
failure) and from then on the node is *suspended*:

* it behaves like a node cut off from the network: inbound Raft messages are dropped and the
  core is not ticked, so nothing new piles up in memory and no message that would depend on
  the unsaved state (a vote, an acknowledgement) ever leaves. The failure reaches the driver
  as a failed storage job (``NodeDriver.storage_done``); the worker runs none of the later jobs
  of that generation (``storage_jobs.FailGate``), so no save lands after a missing one, and the
  messages waiting for the failed save never leave (Raft's rules are the restart rules: a
  crash just before the fsync looks the same to the other nodes);
* writes are refused (``WritesSuspended``: 507 for a full disk, 503 for an I/O error) with
  ``not_applied``; a write whose append failed is answered at once: ``not_applied`` if the
  entry certainly reached no log (SQLITE_FULL rolled it back and it was not sent to followers
  first), ``unknown`` if a leader had already sent it to its followers or the fsync itself
  failed (it may commit without us). Every other write or read still waiting is answered
  too (``unknown`` / ``not_applied``): this node will not learn their fate while suspended;
* reads that need no Raft round (``consistency=stale``, listings) are served from the
  applied state; a linearizable read is forwarded to the leader when one is known;
* every ``retry_ticks`` the driver tries a small probe write; once it goes through, the driver
  rebuilds its core from what the disk holds, as a restart would, and :meth:`recovered` lifts
  the suspension. The other nodes
  elect a new leader meanwhile if this was the leader; when it comes back it learns the new
  term from the first message and catches up like any lagging follower.

Nothing here raises for a broken invariant, and the node never exits for a full disk: it
cannot crash-loop, and nothing committed is lost (the failed transactions wrote nothing).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from beaver_vault.errors import NoLeader, StorageFailure, WritesSuspended
from beaver_vault.raft.core import LEADER
from beaver_vault.raft.messages import Entry
from beaver_vault.raft.ready import Ready

if TYPE_CHECKING:
    from beaver_vault.node.driver import NodeDriver

DISK_FULL = "disk_full"

log = logging.getLogger("beaver_vault.node")


class DiskGuard:
    def __init__(self, driver: NodeDriver, *, retry_ticks: int = 20, tick_ms: int = 50) -> None:
        self.d = driver
        self.retry_ticks = max(1, retry_ticks)
        self.tick_ms = tick_ms
        self.failure: StorageFailure | None = None
        self.ticks = 0
        self.since_tick = 0
        self.next_retry_tick = 0
        self.counters: dict[str, int] = {
            "storage_failures": 0,
            "storage_recoveries": 0,
            "storage_retries": 0,
            "writes_refused_storage": 0,
            "messages_dropped_storage": 0,
        }

    @property
    def suspended(self) -> bool:
        return self.failure is not None

    # ------------------------------------------------------------------ driver hooks

    def tick(self) -> None:
        self.ticks += 1

    def retry_due(self) -> bool:
        """While suspended: may ``process()`` try the failed work again now? Only every
        ``retry_ticks``, and only if a small write goes through (the storage's optional
        ``probe_write``), so a node whose failed work is not in a Ready (a snapshot chunk)
        does not resume, fail and log again every retry."""
        if self.ticks < self.next_retry_tick:
            return False
        self.next_retry_tick = self.ticks + self.retry_ticks
        self.counters["storage_retries"] += 1
        probe = getattr(self.d.storage, "probe_write", None)
        if callable(probe):
            try:
                probe()
            except StorageFailure as e:
                self.failure = e
                return False
        return True

    def drop_message(self) -> None:
        self.counters["messages_dropped_storage"] += 1

    def check_write(self) -> None:
        """Raise ``WritesSuspended`` while suspended (the write is refused at the door)."""
        if self.failure is not None:
            self.counters["writes_refused_storage"] += 1
            raise self.refusal("not_applied")

    def check_read(self) -> None:
        """A linearizable read needs Raft rounds this node cannot take while suspended: send
        it to the leader if one is known (the API forwards ``NotLeader``), else refuse it."""
        if self.failure is None:
            return
        d = self.d
        lid = d.core.leader_id
        if lid is not None and lid != d.id:
            raise d.not_leader()
        raise self.refusal("not_applied")

    def refusal(self, outcome: str) -> WritesSuspended:
        f = self.failure
        reason = f.reason if f is not None else DISK_FULL
        return WritesSuspended(f"this node cannot write to its disk: {self.describe()}; it retries by itself", reason, outcome)

    def failed(self, failure: StorageFailure, rd: Ready | None, sent_early: bool, unsaved_entries: tuple[Entry, ...]) -> None:
        """The storage refused a write while handling ``rd`` (None: an inbound message, or a
        compaction); ``unsaved_entries``: the entries whose append failed (sent to followers
        before it if ``sent_early``)."""
        d = self.d
        first = self.failure is None
        self.failure = failure
        if first:
            self.since_tick = self.ticks
            self.counters["storage_failures"] += 1
            log.error(
                "%s: writes suspended: %s; serving local reads, retrying every %g s",
                d.id,
                failure,
                self.retry_ticks * self.tick_ms / 1000,
                extra={"event": "writes_suspended", "fields": {"reason": failure.reason}},
            )
        self.next_retry_tick = self.ticks + self.retry_ticks
        if rd is not None:
            for pid in rd.snapshots:
                # The transfer the core asked for will not start now: let it ask again later.
                d.core.snapshot_finished(pid, ok=False)
        unsaved = {e.index for e in unsaved_entries}
        maybe_sent = sent_early and d.core.role == LEADER
        for index, w in list(d.outcomes.proposals.items()):
            if index in unsaved and not maybe_sent and not failure.maybe_written:
                outcome = "not_applied"  # rolled back and never sent: in no log anywhere
            else:
                outcome = "unknown"  # in a log elsewhere, or durable here: it may commit
            d.outcomes.forget(w)
            w._finish(error=self.refusal(outcome))
        for w in [*d.outcomes.reads.values(), *(rw for _, rw in d.outcomes.read_waits)]:
            d.outcomes.forget(w)
            w._finish(error=NoLeader(f"this node cannot write to its disk ({failure.reason}); read not served"))

    def recovered(self) -> None:
        if self.failure is not None:
            secs = (self.ticks - self.since_tick) * self.tick_ms / 1000
            log.warning(
                "%s: the disk accepts writes again after %g s: writes resumed",
                self.d.id,
                secs,
                extra={"event": "writes_resumed", "fields": {"after_s": secs}},
            )
            self.failure = None
            self.counters["storage_recoveries"] += 1

    # ------------------------------------------------------------------ views

    def describe(self) -> str | None:
        """Why writes are suspended (None: they are not), for ``/api/v1/status`` and the UI."""
        f = self.failure
        if f is None:
            return None
        words = "the disk is full" if f.reason == DISK_FULL else "the disk reported an I/O error"
        secs = (self.ticks - self.since_tick) * self.tick_ms / 1000
        return f"{words} (for {secs:g} s; retrying every {self.retry_ticks * self.tick_ms / 1000:g} s): {f}"

    def status(self) -> dict[str, Any]:
        f = self.failure
        return {
            "writable": f is None,
            "reason": None if f is None else f.reason,
            "detail": self.describe(),
            "since_ms": None if f is None else (self.ticks - self.since_tick) * self.tick_ms,
        }
