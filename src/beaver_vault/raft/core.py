"""RaftCore: the whole Raft protocol as a deterministic state machine with no I/O.

Inputs: ``tick()`` (one unit of logical time), ``step(msg)``, ``propose(...)``,
``read_index(ctx)``. Output: ``ready()`` hands back a ``Ready`` (what to persist, send, apply);
the driver does it in that order and then calls ``advance(ready)``. Nothing else leaves.

Choices, each for a reason:

* PreVote: a node that was partitioned away first asks whether it could win before bumping
  its term, so rejoining never deposes a healthy leader.
* CheckQuorum: a leader that has not heard from a quorum within an election timeout steps
  down; followers that hear from a leader ignore vote requests for an election timeout
  (leader stickiness), so a removed or partitioned node cannot disrupt the cluster.
* The leader counts its own entries only after they are persisted (``advance``), so an entry
  is committed only when it is durable on a majority, the leader included.
* Only entries of the current term are committed by counting (Figure 8); a new leader
  appends a no-op to commit the entries of earlier terms.
* Membership: single-server changes; a configuration takes effect when appended (and is
  rolled back if that entry is truncated); one change at a time, and none before the new
  leader's no-op has committed.
* ReadIndex: a read is stamped with the commit index and a heartbeat round (``read_seq``);
  it is confirmed once a quorum echoed that round, which proves leadership at that time.

The parts, as in etcd-io/raft: this module keeps roles, elections, ``tick``/``step``, the
follower's side of AppendRequest, proposals and ``ready``; ``storage_side`` (inherited) what the
driver reports back as its storage work completes (``accept``, ``persisted``, ``fetched``,
``compact``, ``restore``, the end of a snapshot transfer); ``replication`` (what the leader
sends each follower and what the answers mean for its ``Progress``), ``readonly`` (ReadIndex
bookkeeping), ``tracker`` (configurations in force), ``status`` and ``ready`` (the values
handed out) live beside it. It stays one file of ~680 lines because ``step``, the role changes
and elections share every field of the state machine; cutting them apart would only spread
one state machine over several files.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from beaver_vault.errors import ConfigBusy, InvariantViolation, NoLeader, NotAVoter, NotLeader, Overloaded
from beaver_vault.raft import quorum, replication
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.log import RaftLog
from beaver_vault.raft.messages import (
    AppendRequest,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Membership,
    NodeId,
    RaftMessage,
    ReadIndexRequest,
    ReadIndexResponse,
    ReadState,
    SnapshotAck,
    TimeoutNow,
    VoteRequest,
    VoteResponse,
)
from beaver_vault.raft.progress import REPLICATE, Progress
from beaver_vault.raft.readonly import ReadOnly
from beaver_vault.raft.ready import Ready
from beaver_vault.raft.roles import CANDIDATE, FOLLOWER, LEADER, PRE_CANDIDATE
from beaver_vault.raft.status import RaftStatus, peer_statuses
from beaver_vault.raft.storage_side import StorageSide
from beaver_vault.raft.tracker import ConfigTracker, check_change

__all__ = ["CANDIDATE", "FOLLOWER", "LEADER", "PRE_CANDIDATE", "RaftCore", "SnapshotMeta"]


@dataclass(frozen=True, slots=True)
class SnapshotMeta:
    """Where a snapshot leaves the log: the last index and term it covers, and the
    configuration in force there."""

    index: int
    term: int
    membership: Membership


class RaftCore(StorageSide):
    def __init__(
        self,
        node_id: NodeId,
        config: RaftConfig,
        rng: random.Random,
        hard_state: HardState | None = None,
        entries: Sequence[Entry] = (),
        applied: int = 0,
        snapshot: SnapshotMeta | None = None,
    ) -> None:
        self.id = node_id
        self.cfg = config
        self.rng = rng
        if snapshot is not None:
            self.log = RaftLog(entries, snapshot.index, snapshot.term, config.log_cache_bytes)
        else:
            self.log = RaftLog(entries, cache_budget=config.log_cache_bytes)
        hard_state = hard_state or HardState()
        self.term = hard_state.term
        self.vote = hard_state.vote
        self.commit = min(hard_state.commit, self.log.last_index)
        self.applied = applied  # highest index handed out in Ready.committed
        if self.applied > self.commit:
            # The state machine may be ahead of the persisted commit index (commit is saved
            # lazily); it only ever applied committed entries, so commit is at least this.
            self.commit = min(self.applied, self.log.last_index)
        self.role = FOLLOWER
        self.leader_id: NodeId | None = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self.ticks = 0  # ticks since this core was created (for last-contact ages)
        self.randomized_timeout = 0
        self._reset_randomized_timeout()
        self.votes: dict[NodeId, bool] = {}
        self.progress: dict[NodeId, Progress] = {}  # leader: every member's replication state
        self.reads = ReadOnly(config.max_pending_reads)
        self.msgs: list[RaftMessage] = []
        self.broadcast_pending = False
        self.heartbeat_pending = False
        self.commit_notice_pending = False  # leader: a follower may not know the commit index yet
        self.prev_hard_state = HardState(self.term, self.vote, self.commit)
        self.lead_transferee: NodeId | None = None
        if snapshot is not None:
            self.commit = max(self.commit, snapshot.index)
            self.applied = max(self.applied, snapshot.index)
        self.tracker = ConfigTracker(self.log.entries, (snapshot.index, snapshot.membership) if snapshot else None)
        self.snapshot_requests: list[NodeId] = []
        self.fetch_requests: list[tuple[NodeId, int, int]] = []
        self._evict()

    # ------------------------------------------------------------------ membership

    @property
    def membership(self) -> Membership:
        return self.tracker.membership

    @property
    def membership_index(self) -> int:
        return self.tracker.index

    @property
    def configs(self) -> list[tuple[int, Membership]]:
        """Every configuration since the compaction point, in index order (see ``tracker``)."""
        return self.tracker.configs

    def membership_at(self, index: int) -> Membership:
        """The configuration in force at ``index`` (the latest config entry at or before it)."""
        return self.tracker.at(index)

    def _voters(self) -> tuple[NodeId, ...]:
        return self.membership.voters

    def _is_voter(self) -> bool:
        return self.id in self._voters()

    def _peers(self) -> list[NodeId]:
        return [m for m in self.membership.ids if m != self.id]

    def _on_config_change(self) -> None:
        if self.role == LEADER:
            replication.track_members(self.progress, self.id, self.membership, self.log.last_index)

    # ------------------------------------------------------------------ role changes

    def _reset_randomized_timeout(self) -> None:
        self.randomized_timeout = self.cfg.election_ticks + self.rng.randrange(self.cfg.election_ticks)

    def _reset(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None
        self.leader_id = None
        self.election_elapsed = 0
        self.heartbeat_elapsed = 0
        self._reset_randomized_timeout()
        self.votes = {}
        self.lead_transferee = None
        self.reads.drop_all(self.id)

    def become_follower(self, term: int, leader: NodeId | None) -> None:
        self._reset(term)
        self.role = FOLLOWER
        self.leader_id = leader
        self.progress = {}

    def _become_pre_candidate(self) -> None:
        # Term and vote are unchanged: a pre-vote changes nothing durable.
        self.role = PRE_CANDIDATE
        self.votes = {}
        self.leader_id = None
        self.progress = {}
        self.reads.drop_all(self.id)
        self.election_elapsed = 0
        self._reset_randomized_timeout()

    def _become_candidate(self) -> None:
        self._reset(self.term + 1)
        self.role = CANDIDATE
        self.vote = self.id
        self.progress = {}

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = LEADER
        self.leader_id = self.id
        last = self.log.last_index
        self.progress = {pid: Progress(match=0, next=last + 1) for pid in self._peers()}
        self.progress[self.id] = Progress(match=self.log.stable, next=last + 1, state=REPLICATE)
        for pr in self.progress.values():
            pr.recent_active = True
        self._append_local(EntryKind.NOOP, b"")

    # ------------------------------------------------------------------ elections

    def campaign(self, transfer: bool = False) -> None:
        if not self._is_voter():
            return
        if self.cfg.pre_vote and not transfer:
            self._become_pre_candidate()
            self._poll(self.id, True, pre_vote=True)
            if self.role != PRE_CANDIDATE:
                return
            term, pre = self.term + 1, True
        else:
            self._become_candidate()
            self._poll(self.id, True, pre_vote=False)
            if self.role != CANDIDATE:
                return
            term, pre = self.term, False
        for pid in self._voters():
            if pid == self.id:
                continue
            self.send(
                VoteRequest(
                    term=term,
                    src=self.id,
                    dst=pid,
                    last_log_index=self.log.last_index,
                    last_log_term=self.log.last_term,
                    pre_vote=pre,
                    transfer=transfer,
                )
            )

    def _poll(self, voter: NodeId, granted: bool, pre_vote: bool) -> None:
        if voter not in self._voters():
            return
        self.votes.setdefault(voter, granted)
        yes = [v for v, g in self.votes.items() if g]
        no = [v for v, g in self.votes.items() if not g]
        voters = self._voters()
        if quorum.has_quorum(voters, yes):
            if pre_vote:
                self._become_candidate()
                self._poll(self.id, True, pre_vote=False)
                if self.role == CANDIDATE:
                    for pid in voters:
                        if pid != self.id:
                            self.send(
                                VoteRequest(self.term, self.id, pid, self.log.last_index, self.log.last_term)
                            )
            else:
                self._become_leader()
                self.broadcast_pending = True
        elif quorum.has_quorum(voters, no):
            self.become_follower(self.term, None)

    def _log_ok(self, last_index: int, last_term: int) -> bool:
        return (last_term, last_index) >= (self.log.last_term, self.log.last_index)

    def _in_lease(self) -> bool:
        return self.cfg.check_quorum and self.leader_id is not None and self.election_elapsed < self.cfg.election_ticks

    # ------------------------------------------------------------------ ticks

    def tick(self) -> None:
        self.ticks += 1
        if self.role == LEADER:
            self._tick_leader()
        else:
            self.election_elapsed += 1
            if self.election_elapsed >= self.randomized_timeout and self._is_voter():
                self.election_elapsed = 0
                self.campaign()

    def _tick_leader(self) -> None:
        self.heartbeat_elapsed += 1
        self.election_elapsed += 1
        if self.election_elapsed >= self.cfg.election_ticks:
            self.election_elapsed = 0
            if self.cfg.check_quorum:
                active = [pid for pid, pr in self.progress.items() if pr.recent_active or pid == self.id]
                if not quorum.has_quorum(self._voters(), active):
                    self.become_follower(self.term, None)
                    return
                for pid, pr in self.progress.items():
                    pr.recent_active = pid == self.id
            self.lead_transferee = None  # a transfer that did not finish in time is abandoned
        if self.heartbeat_elapsed >= self.cfg.heartbeat_ticks:
            self.heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    # ------------------------------------------------------------------ step

    def step(self, msg: RaftMessage) -> None:
        if msg.dst != self.id:
            return
        if msg.term > self.term:
            match msg:
                case VoteRequest(pre_vote=pre, transfer=transfer):
                    if not transfer and self._in_lease():
                        return  # leader stickiness: we heard from a live leader recently
                    if not pre:
                        self.become_follower(msg.term, None)
                case VoteResponse(pre_vote=True, granted=True):
                    pass  # a granted pre-vote carries the future term; it is not a newer leader
                case AppendRequest() | TimeoutNow() | InstallSnapshot():
                    self.become_follower(msg.term, msg.src)
                case _:
                    self.become_follower(msg.term, None)
        elif msg.term < self.term:
            match msg:
                case AppendRequest():
                    # A deposed leader: tell it our term so it steps down (needed with
                    # check-quorum/pre-vote, where it would otherwise never hear a higher term).
                    self.send(AppendResponse(self.term, self.id, msg.src, False, 0))
                case VoteRequest(pre_vote=True):
                    self.send(VoteResponse(self.term, self.id, msg.src, False, pre_vote=True))
            return

        match msg:
            case VoteRequest():
                self._handle_vote_request(msg)
            case VoteResponse():
                if msg.pre_vote and self.role == PRE_CANDIDATE:
                    self._poll(msg.src, msg.granted, pre_vote=True)
                elif not msg.pre_vote and self.role == CANDIDATE:
                    self._poll(msg.src, msg.granted, pre_vote=False)
            case AppendRequest():
                if self.role == LEADER:
                    raise InvariantViolation(f"{self.id}: two leaders in term {self.term} ({msg.src})")
                if self.role != FOLLOWER:
                    self.become_follower(msg.term, msg.src)
                self.leader_id = msg.src
                self.election_elapsed = 0
                self._handle_append(msg)
            case AppendResponse():
                if self.role == LEADER:
                    self._handle_append_response(msg)
            case TimeoutNow():
                if self.role != LEADER:
                    self.campaign(transfer=True)
            case ReadIndexRequest():
                self._handle_remote_read(msg)
            case ReadIndexResponse():
                self.reads.answered(msg.ctx, msg.ok, msg.index)
            case InstallSnapshot():
                if self.role == LEADER:
                    raise InvariantViolation(f"{self.id}: snapshot from another leader in term {self.term}")
                if self.role != FOLLOWER:
                    self.become_follower(msg.term, msg.src)
                self.leader_id = msg.src
                self.election_elapsed = 0
                # The data itself is the driver's business (see NodeDriver); it calls restore().
            case SnapshotAck():
                pass  # flow control of the driver's snapshot sender

    def _handle_vote_request(self, m: VoteRequest) -> None:
        if m.pre_vote:
            can = m.term > self.term and not self._in_lease() or m.transfer
        else:
            can = self.vote == m.src or (self.vote is None and self.leader_id is None)
        granted = can and self._log_ok(m.last_log_index, m.last_log_term)
        if granted and not m.pre_vote:
            self.vote = m.src
            self.election_elapsed = 0
        term = m.term if (m.pre_vote and granted) else self.term
        self.send(VoteResponse(term, self.id, m.src, granted, pre_vote=m.pre_vote))

    # ------------------------------------------------------------------ replication: follower

    def _handle_append(self, m: AppendRequest) -> None:
        if m.prev_index < self.commit:
            # Everything up to our commit index is committed and so matches; skip that part.
            entries = tuple(e for e in m.entries if e.index > self.commit)
            if not entries and m.prev_index + len(m.entries) <= self.commit:
                self.send(AppendResponse(self.term, self.id, m.src, True, self.commit, read_seq=m.read_seq))
                return
            prev_index = self.commit
            prev_term = self.log.term(prev_index)
            m = AppendRequest(m.term, m.src, m.dst, prev_index, prev_term, entries, m.commit, m.read_seq)
        if not self.log.matches(m.prev_index, m.prev_term):
            if m.prev_index > self.log.last_index:
                hint = self.log.last_index
            else:
                hint = self.log.find_conflict_hint(m.prev_index, m.prev_term)
            self.send(
                AppendResponse(
                    self.term,
                    self.id,
                    m.src,
                    False,
                    m.prev_index,
                    hint_index=hint,
                    hint_term=self.log.term(hint),
                    read_seq=m.read_seq,
                )
            )
            return
        if m.entries:
            first_new = self.log.merge(m.entries)
            if first_new:
                if first_new <= self.commit:
                    raise InvariantViolation(f"{self.id}: truncating committed index {first_new}")
                changed = self.tracker.rollback(first_new)
                for e in m.entries:
                    if e.index >= first_new:
                        changed = self.tracker.track(e) or changed
                if changed:
                    self._on_config_change()
        last_new = m.prev_index + len(m.entries)
        if m.commit > self.commit:
            self.commit = max(self.commit, min(m.commit, last_new))
        self.send(AppendResponse(self.term, self.id, m.src, True, last_new, read_seq=m.read_seq))

    # ------------------------------------------------------------------ replication: leader

    def _broadcast_heartbeat(self) -> None:
        replication.broadcast_heartbeat(self)
        self.broadcast_pending = True  # retry probes / fill windows on the next ready

    def _handle_append_response(self, m: AppendResponse) -> None:
        pr = self.progress.get(m.src)
        if pr is None:
            return
        pr.recent_active = True
        pr.last_contact_tick = self.ticks
        if m.read_seq > pr.read_ack:
            pr.read_ack = m.read_seq
            self._confirm_reads()
        if m.success:
            if replication.on_accepted(pr, m.match_index, self.log.last_index):
                self._maybe_commit()
                if pr.commit_wanted > pr.commit_sent and min(self.commit, pr.match) > pr.commit_sent:
                    self.commit_notice_pending = True  # it waits for a read index it now holds
                if m.src == self.lead_transferee and pr.match == self.log.last_index:
                    self.send(TimeoutNow(self.term, self.id, m.src))
            replication.fill(self, m.src, pr)
        elif replication.on_rejected(pr, m, self.log):
            replication.fill(self, m.src, pr)

    def _maybe_commit(self) -> None:
        match = {pid: pr.match for pid, pr in self.progress.items()}
        idx = quorum.committed_index(self._voters(), match)
        if idx > self.commit and self.log.term(idx) == self.term:
            first_commit_of_term = self.log.term(self.commit) != self.term
            self.commit = idx
            if first_commit_of_term:
                for ctx, origin in self.reads.take_waiting():
                    self._register_read(ctx, origin)
            # Followers learn the new commit index with the next append or heartbeat, or at once
            # if they wait for it to serve a read (``replication.broadcast_commit``).
            self.commit_notice_pending = True
            if self.id not in self._voters() and self.commit >= self.membership_index:
                # Our own removal is committed: hand over to the most up-to-date voter at once
                # (TimeoutNow, so nobody waits an election timeout), then stop leading.
                best = max(
                    (pid for pid in self._voters() if pid in self.progress),
                    key=lambda pid: (self.progress[pid].match, pid),
                    default=None,
                )
                if best is not None and self.progress[best].match == self.log.last_index:
                    self.send(TimeoutNow(self.term, self.id, best))
                self.become_follower(self.term, None)

    def _append_local(self, kind: EntryKind, data: bytes) -> Entry:
        e = Entry(self.term, self.log.last_index + 1, kind, data)
        self.log.append(e)
        if self.tracker.track(e):
            self._on_config_change()
        self.broadcast_pending = True
        return e

    # ------------------------------------------------------------------ proposals, membership changes, transfers

    def _committed_in_term(self) -> bool:
        return self.log.term(self.commit) == self.term

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a client command; returns (index, term). Raises NotLeader."""
        if self.role != LEADER:
            raise NotLeader(self.leader_id)
        if self.lead_transferee is not None:
            raise NotLeader(None)  # leadership is being handed over; retry on the new leader
        e = self._append_local(EntryKind.NORMAL, data)
        return e.index, e.term

    def config_change_blocker(self) -> str | None:
        """Why a membership change cannot be proposed now (None if it can)."""
        if self.role != LEADER:
            return "not the leader"
        if not self._committed_in_term():
            return "the new leader has not committed its first entry yet"
        if self.membership_index > self.commit:
            return "another membership change is in progress"
        return None

    def propose_config(self, membership: Membership) -> tuple[int, int]:
        if self.role != LEADER:
            raise NotLeader(self.leader_id)
        why = self.config_change_blocker()
        if why is not None:
            raise ConfigBusy(why)
        check_change(self.membership, membership)
        e = self._append_local(EntryKind.CONFIG, membership.encode())
        return e.index, e.term

    def transfer_leadership(self, target: NodeId) -> None:
        if self.role != LEADER:
            raise NotLeader(self.leader_id)
        if target == self.id:
            return
        if target not in self._voters():
            raise NotAVoter(target)
        self.lead_transferee = target
        self.election_elapsed = 0
        pr = self.progress[target]
        if pr.match == self.log.last_index:
            self.send(TimeoutNow(self.term, self.id, target))
        else:
            replication.fill(self, target, pr)

    # ------------------------------------------------------------------ read-only requests

    def read_index(self, ctx: int) -> None:
        """Ask for a linearizable read point; answered by a ReadState(ctx, index) in a Ready,
        or by ctx in Ready.dropped_reads if leadership is lost first. On a follower the
        leader is asked (ReadIndexRequest), so followers serve linearizable reads themselves
        once they have applied that index."""
        if self.reads.full():
            raise Overloaded("too many reads waiting for confirmation")
        if self.role != LEADER:
            if self.leader_id is None or self.role != FOLLOWER:
                raise NoLeader("no leader is known to confirm the read")
            self.reads.unsent.append(ctx)  # asked in the next Ready, with every read arriving meanwhile
            return
        if not self._committed_in_term():
            self.reads.waiting.append(ctx)
            return
        self._register_read(ctx)

    def _handle_remote_read(self, m: ReadIndexRequest) -> None:
        if self.role != LEADER or self.reads.full():
            self.send(ReadIndexResponse(self.term, self.id, m.src, m.ctx, 0, False))
            return
        if not self._committed_in_term():
            self.reads.waiting_remote.append((m.src, m.ctx))
            return
        self._register_read(m.ctx, m.src)

    def _register_read(self, ctx: int, origin: NodeId | None = None) -> None:
        self.progress[self.id].read_ack = self.reads.stamp(ctx, self.commit, origin or self.id)
        self._confirm_reads()
        if self.reads.pending:
            self.heartbeat_pending = True  # one heartbeat round per Ready confirms every read so far

    def _confirm_reads(self) -> None:
        for r in self.reads.confirm(self.id, self._voters(), self.progress):
            self.send(ReadIndexResponse(self.term, self.id, r.origin, r.ctx, r.index, True))
            pr = self.progress.get(r.origin) if r.origin != self.id else None
            if pr is not None and r.index > pr.commit_wanted:
                pr.commit_wanted = r.index
                self.commit_notice_pending = True  # told once it holds the entries up to there

    @property
    def read_states(self) -> list[ReadState]:
        """Confirmed reads not yet handed out in a Ready."""
        return self.reads.states

    @property
    def read_seq(self) -> int:
        """The latest read round; every AppendRequest carries it (see ``readonly``)."""
        return self.reads.seq

    # ------------------------------------------------------------------ ready / advance

    def send(self, m: RaftMessage) -> None:
        """Queue a message for the next Ready."""
        self.msgs.append(m)

    def request_snapshot(self, pid: NodeId) -> None:
        """Leader: ``pid`` needs entries that were compacted; the driver streams a snapshot."""
        self.snapshot_requests.append(pid)

    def request_entries(self, pid: NodeId, lo: int, hi: int) -> None:
        """Leader: ``pid`` needs entries [lo, hi) that left the in-memory cache; the driver
        reads them from storage and hands them to ``fetched``."""
        self.fetch_requests.append((pid, lo, hi))

    def has_ready(self) -> bool:
        return bool(
            self.fetch_requests
            or self.msgs
            or self.broadcast_pending
            or self.heartbeat_pending
            or self.commit_notice_pending
            or self.log.in_progress < self.log.last_index
            or self.applied < min(self.commit, self.log.last_index)
            or self.reads.states
            or self.reads.dropped
            or self.reads.unsent
            or self.snapshot_requests
            or HardState(self.term, self.vote, self.commit) != self.prev_hard_state
        )

    def ready(self) -> Ready:
        if self.heartbeat_pending:
            self.heartbeat_pending = False
            if self.role == LEADER:
                self._broadcast_heartbeat()
        if self.broadcast_pending:
            self.broadcast_pending = False
            if self.role == LEADER:
                replication.broadcast_append(self)
        if self.commit_notice_pending:
            self.commit_notice_pending = False
            if self.role == LEADER:
                replication.broadcast_commit(self)
        batch = self.reads.take_unsent()
        if batch is not None:
            if self.role == FOLLOWER and self.leader_id is not None:
                self.send(ReadIndexRequest(self.term, self.id, self.leader_id, batch))
            else:  # cannot happen (losing the leader drops unsent reads); refuse rather than hang
                self.reads.answered(batch, False, 0)
        hs = HardState(self.term, self.vote, self.commit)
        committed: tuple[Entry, ...] = ()
        hi = min(self.commit, self.log.last_index)
        if hi > self.applied:
            committed = tuple(self.log.entry(i) for i in range(self.applied + 1, hi + 1))
        rd = Ready(
            hard_state=hs if hs != self.prev_hard_state else None,
            entries=self.log.unstable(),
            messages=tuple(self.msgs),
            committed=committed,
            read_states=tuple(self.reads.states),
            dropped_reads=tuple(self.reads.dropped),
            snapshots=tuple(self.snapshot_requests),
            fetches=tuple(self.fetch_requests),
        )
        self.snapshot_requests = []
        self.fetch_requests = []
        self.msgs = []
        self.reads.states = []
        self.reads.dropped = []
        return rd

    # ------------------------------------------------------------------ status

    def status(self) -> RaftStatus:
        return RaftStatus(
            id=self.id,
            role=self.role,
            term=self.term,
            vote=self.vote,
            leader_id=self.leader_id,
            commit=self.commit,
            applied=self.applied,
            last_index=self.log.last_index,
            first_index=self.log.first_index,
            membership=self.membership,
            membership_index=self.membership_index,
            peers=peer_statuses(self.progress),
        )
