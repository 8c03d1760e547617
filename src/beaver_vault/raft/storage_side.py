"""The core's side facing the driver's storage: what the driver reports back to the core.

A driver hands the core's ``Ready`` to its storage worker and calls ``accept`` at once; when the
worker says the entries are durable it calls ``persisted``; entries it read from storage for a
follower come back through ``fetched``; a compaction or a snapshot install that became durable
comes back through ``compact`` or ``restore``; the end of a snapshot transfer through
``snapshot_finished``. None of these starts anything: they move the core's view of what is
written, durable, applied or compacted, and (leader) let commitment advance.

``RaftCore`` (``core.py``) inherits these methods; they live here so that the protocol itself
(roles, elections, ``step``, proposals, ``ready``) reads on its own. The fields and the two
methods of the core they use are declared below.
"""

from __future__ import annotations

from collections.abc import Sequence

from beaver_vault.errors import InvariantViolation
from beaver_vault.raft import replication
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.log import RaftLog
from beaver_vault.raft.messages import AppendResponse, Entry, HardState, Membership, NodeId, RaftMessage
from beaver_vault.raft.progress import Progress
from beaver_vault.raft.ready import Ready
from beaver_vault.raft.roles import LEADER
from beaver_vault.raft.tracker import ConfigTracker


class StorageSide:
    """Mixed into ``RaftCore``: the calls a driver makes as its storage work completes."""

    id: NodeId
    cfg: RaftConfig
    term: int
    role: str
    leader_id: NodeId | None
    commit: int
    applied: int
    log: RaftLog
    tracker: ConfigTracker
    progress: dict[NodeId, Progress]
    prev_hard_state: HardState
    broadcast_pending: bool

    def send(self, m: RaftMessage) -> None:
        raise NotImplementedError  # RaftCore's

    def _maybe_commit(self) -> None:
        raise NotImplementedError  # RaftCore's

    @property
    def read_seq(self) -> int:
        raise NotImplementedError  # RaftCore's

    def request_snapshot(self, pid: NodeId) -> None:
        raise NotImplementedError  # RaftCore's

    def request_entries(self, pid: NodeId, lo: int, hi: int) -> None:
        raise NotImplementedError  # RaftCore's

    def fetched(self, pid: NodeId, entries: Sequence[Entry]) -> None:
        """Leader: entries read from storage for ``pid`` (see ``request_entries``). Sent if they
        are still what ``pid`` needs next and still our log (else the next round asks again)."""
        pr = self.progress.get(pid)
        if pr is None:
            return
        pr.fetching = False
        if self.role != LEADER or not entries or entries[0].index != pr.next:
            return
        if entries[0].index - 1 < self.log.offset or any(self.log.term(e.index) != e.term for e in entries):
            return
        if replication.send_append(self, pid, pr, entries):
            replication.fill(self, pid, pr)

    def _evict(self) -> None:
        """Keep the in-memory log within its byte budget: only entries durable and handed to
        the state machine leave (so what is to be written or applied is always at hand)."""
        self.log.evict(min(self.log.stable, self.applied))


    def accept(self, rd: Ready) -> None:
        """The driver took ``rd``: its hard state and entries are being written (not durable
        yet: ``persisted`` says when), its committed entries are being applied. Nothing of it
        is handed out again."""
        if rd.hard_state is not None:
            self.prev_hard_state = rd.hard_state
        if rd.entries:
            self.log.accept(rd.entries[-1].index)
        if rd.committed:
            self.applied = max(self.applied, rd.committed[-1].index)
        self._evict()

    def persisted(self, index: int, term: int) -> None:
        """The entries up to ``index`` (the last of them of ``term``) are durable. Only if our
        log still holds that entry (a later Ready may have truncated it: then the write that
        replaced it will report). The leader counts itself only here."""
        if index and self.log.matches(index, term):
            self.log.stable_to(index)
        if self.role == LEADER:
            me = self.progress.get(self.id)
            if me is not None:
                me.match = max(me.match, self.log.stable)
                me.next = self.log.last_index + 1
                self._maybe_commit()
        self._evict()

    def advance(self, rd: Ready) -> None:
        """``accept`` and, at once, ``persisted`` (a driver that writes synchronously)."""
        self.accept(rd)
        if rd.entries:
            last = rd.entries[-1]
            self.persisted(last.index, last.term)

    def compact(self, index: int) -> None:
        """The state machine's state at ``index`` is durable in a snapshot: drop the log
        before it. Only applied (hence committed and stable) entries are compacted."""
        if index > self.applied:
            raise InvariantViolation(f"{self.id}: compacting {index} beyond applied {self.applied}")
        self.log.compact(index)
        self.tracker.compact(index)

    def restore(self, index: int, term: int, membership: Membership) -> None:
        """Follower: the driver installed (durably) a snapshot at ``index``; continue from it."""
        if index <= self.commit:
            return
        self.log.reset_to(index, term)
        self.commit = index
        self.applied = index
        self.tracker.reset(index, membership)
        if self.leader_id is not None:
            self.send(AppendResponse(self.term, self.id, self.leader_id, True, index))

    def snapshot_matches(self, leader: NodeId, index: int) -> None:
        """Follower: a snapshot offered at ``index`` is not needed, our log holds that entry;
        tell the leader we match there."""
        self.send(AppendResponse(self.term, self.id, leader, True, index))

    def snapshot_finished(self, pid: NodeId, ok: bool, index: int = 0) -> None:
        """Leader: the driver stopped streaming a snapshot to ``pid``. On success the follower
        acknowledged the last chunk after installing the snapshot at ``index`` durably: it
        matches there (its AppendResponse may be lost, and if we compacted past ``index``
        meanwhile our heartbeats could never match it again). On failure we probe again from
        its match index, but only at the next heartbeat round: retrying at once (a rejection,
        a new snapshot request, a refusal, ...) would spin without any time passing."""
        pr = self.progress.get(pid)
        if pr is not None and replication.on_snapshot_done(pr, ok, index):
            self.broadcast_pending = True
            self._maybe_commit()
