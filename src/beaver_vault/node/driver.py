"""NodeDriver: the synchronous glue of Raft core + storage + transport + key-value state machine.

Production (``node.runtime``, on Trio) and the deterministic simulator (``sim``) run this same
code; they differ only in the storage and transport they inject and in who calls ``tick``,
``receive`` and ``process``. Everything a client outcome depends on lives here and in the
driver's parts, so the simulator tests it:

* ``outcomes``: one ``Waiter`` per operation, proposals and reads until resolved (the
  outcome rules: happened, certainly not, unknown);
* ``members``: joins (probe/adopt handshake, learner, promotion), removals, leadership
  transfers, the raft addresses the transport must know;
* ``snapshots``: compaction, streaming a snapshot to a follower, installing one.

Storage work runs on a storage worker (``node/storage_jobs.py``): ``process()`` hands each
Ready's writes to it and goes on; the worker reports each job done, in order, through
``storage_done``. That half of the driver, and the six ordering rules that make it safe, are in
``node/effects.py`` (``StorageEffects``, inherited).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beaver_vault.errors import InvariantViolation, NoLeader, NotLeader, Overloaded, StorageFailure, Unknown
from beaver_vault.kv.state import KeyRecord
from beaver_vault.node.disk_guard import DiskGuard
from beaver_vault.node.effects import StorageEffects
from beaver_vault.node.members import MembershipChanges
from beaver_vault.node.membership_change import ChangeTracker
from beaver_vault.node.outcomes import Outcomes, Waiter
from beaver_vault.node.snapshots import SnapshotSender, SnapshotTransfers
from beaver_vault.node.status import MemberStatus, NodeStatus
from beaver_vault.node.storage_jobs import InlineWorker, StorageWorker
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.core import FOLLOWER, LEADER, RaftCore, SnapshotMeta
from beaver_vault.raft.messages import (
    AdoptRequest,
    AdoptResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Member,
    Membership,
    Message,
    ProbeRequest,
    ProbeResponse,
    RaftMessage,
    SnapshotAck,
    is_handshake,
)
from beaver_vault.storage.base import Storage
from beaver_vault.transport.base import Transport

__all__ = ["DriverOptions", "NodeDriver", "Waiter"]


@dataclass(frozen=True, slots=True)
class DriverOptions:
    raft_address: str
    http_address: str = ""
    max_pending: int = 10_000  # proposals and reads waiting for an outcome (a join is refused past it too)
    handshake_retry_ticks: int = 10
    snapshot_threshold: int = 10_000  # compact when the log holds more entries than this
    snapshot_threshold_bytes: int = 32 * 1024 * 1024  # ... or more bytes of entry data than this
    max_pending_bytes: int = 64 * 1024 * 1024  # commands of the proposals waiting: Overloaded beyond
    disk_retry_ticks: int = 20  # a node whose disk refused a write retries this often (disk_guard.py)
    snapshot_chunk_bytes: int = 256 * 1024
    snapshot_timeout_ticks: int = 100  # a transfer silent for this long is abandoned
    snapshot_resend_ticks: int = 5  # resend the chunk in flight after this many silent ticks
    max_snapshot_senders: int = 2
    # Membership changes (node/membership_change.py): a join handshake, a configuration that
    # does not commit, and a learner's catch-up (plus the time to receive its data at
    # catchup_bytes_per_tick) each get this long before they are dropped or rolled back.
    tick_ms: int = 50  # only to show ages and deadlines in milliseconds
    change_timeout_ticks: int = 600
    catchup_bytes_per_tick: int = 52_429  # 1 MiB/s at 50 ms ticks


class NodeDriver(StorageEffects):
    def __init__(
        self,
        node_id: str,
        storage: Storage,
        transport: Transport,
        *,
        raft_config: RaftConfig,
        rng: random.Random,
        options: DriverOptions,
    ) -> None:
        self.id = node_id
        self.storage = storage
        self.transport = transport
        self.raft_config = raft_config
        self.rng = rng
        self.options = options
        self.cluster_id: str | None = None
        self.core = RaftCore(node_id, raft_config, rng)
        self.outcomes = Outcomes()
        # Read contexts start at a random point, so a leader's late answer to a read asked
        # before this node restarted can never be taken for the answer to a new read.
        self.next_ctx = self.rng.getrandbits(62)
        self.members = MembershipChanges(self)
        self.changes = ChangeTracker(
            self,
            tick_ms=options.tick_ms,
            change_timeout_ticks=options.change_timeout_ticks,
            catchup_bytes_per_tick=options.catchup_bytes_per_tick,
        )
        self.snapshots = SnapshotTransfers(self)
        self.disk = DiskGuard(self, retry_ticks=options.disk_retry_ticks, tick_ms=options.tick_ms)
        self.on_restore: Callable[[int], None] | None = None  # state replaced by a snapshot
        self.applied_index = 0
        self._durable_term_vote: tuple[int, str | None] = (0, None)
        # The term and vote of the last hard state handed to the worker, and a newer hard state
        # that differs from it only by the commit index, not written yet (rule 6).
        self._submitted_term_vote: tuple[int, str | None] = (0, None)
        self._unsaved_hard_state: HardState | None = None
        # Called for every applied entry with the state machine's result (watches listen here).
        self.on_applied: Callable[[int, dict[str, Any] | None], None] | None = None
        self.counters: dict[str, int] = {"proposals": 0, "reads": 0, "overloaded": 0, "applied": 0, "readies": 0}
        # The storage worker (node/storage_jobs.py): inline unless the runtime or the simulator
        # sets another with ``set_worker``.
        self.worker: StorageWorker = InlineWorker(storage, self.storage_done)
        self.jobs_in_flight = 0
        self._job_seq = 0  # jobs submitted
        self._done_seq = 0  # jobs completed (in order: the worker's contract)
        self._gen = 0  # bumped by load(): completions of jobs submitted before are moot
        # Messages waiting for the last save in flight (rule 1); None when no save is in flight.
        self._after_save: list[RaftMessage] | None = None
        self.installing = False  # a snapshot install is in flight (rule 5)
        # The highest entry index a leader sent to followers before its own save (disk_guard.py:
        # a write whose save failed may still commit elsewhere if it went out).
        self.sent_before_save = 0
        self.compacting = False

    @property
    def durable_term_vote(self) -> tuple[int, str | None]:
        """The term and vote known durable (the last save's hard state that completed)."""
        return self._durable_term_vote

    def set_worker(self, worker: StorageWorker) -> None:
        if self.jobs_in_flight:
            raise InvariantViolation(f"{self.id}: storage worker replaced with {self.jobs_in_flight} jobs in flight")
        self.worker = worker

    @property
    def senders(self) -> dict[str, SnapshotSender]:
        """Snapshots being streamed, by follower (leader only)."""
        return self.snapshots.senders

    # ------------------------------------------------------------------ lifecycle

    def start(self, bootstrap: bool) -> None:
        st = self.storage.load()
        if st.cluster_id is None and bootstrap:
            # A brand-new cluster of one: a random cluster id and a first configuration.
            cluster_id = f"{self.rng.getrandbits(64):016x}"
            self.storage.reset(cluster_id)
            me = Membership((Member(self.id, self.options.raft_address, self.options.http_address),))
            self.storage.save(HardState(1, None, 1), [Entry(1, 1, EntryKind.CONFIG, me.encode())])
            st = self.storage.load()
        self._load_durable(st)

    def _load_durable(self, st: Any) -> None:
        snap = None
        if st.snapshot_index:
            snap = SnapshotMeta(st.snapshot_index, st.snapshot_term, Membership.decode(st.snapshot_membership))
        self.load(st.cluster_id, st.hard_state, st.entries, st.applied_index, snap)

    def load(
        self,
        cluster_id: str | None,
        hs: HardState,
        entries: tuple[Entry, ...],
        applied: int,
        snapshot: SnapshotMeta | None = None,
    ) -> None:
        """(Re)build the core from durable state: at start, and when adopted into a cluster."""
        self.cluster_id = cluster_id
        self._durable_term_vote = self._submitted_term_vote = (hs.term, hs.vote)
        self._unsaved_hard_state = None
        self._gen += 1
        self._after_save = None
        self.installing = self.compacting = False
        self.snapshots.reset()
        self.core = RaftCore(self.id, self.raft_config, self.rng, hs, entries, applied, snapshot)
        self.applied_index = applied
        self.transport.set_cluster_id(cluster_id)
        self.members.invalidate_peers()
        self.members.sync_peers()
        if self.core.membership.voters == (self.id,) and self.core.role != LEADER:
            self.core.campaign()  # alone: no reason to wait an election timeout

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self.disk.tick()
        if self.disk.suspended:
            return  # cut off until a retry succeeds (disk_guard.py): no elections, no timers
        if self.installing:
            return  # rule 5: the core waits for the install (a slow node, to the others)
        self.core.tick()
        if self.core.role == LEADER:
            self.members.on_tick_leader()
        self.snapshots.tick()
        self.members.on_tick_handshake()
        self.changes.tick()

    def receive(self, msg: Message) -> None:
        if self.disk.suspended:
            self.disk.drop_message()
            return
        try:
            self._receive(msg)
        except StorageFailure as e:  # adopting, staging or installing a snapshot
            self.disk.failed(e, None, False, ())

    def _receive(self, msg: Message) -> None:
        if not is_handshake(msg) and not self.members.known_sender(msg.src):
            # Raft messages only from members, the node we are joining, or the cluster an
            # AdoptRequest introduced: not from anyone who merely probed us.
            self.counters["dropped_non_member"] = self.counters.get("dropped_non_member", 0) + 1
            return
        if self.installing and not is_handshake(msg):
            self.counters["dropped_installing"] = self.counters.get("dropped_installing", 0) + 1
            return  # rule 5 (the leader resends; dropping is what a lossy network does too)
        match msg:
            case ProbeRequest():
                self.members.on_probe(msg)
            case AdoptRequest():
                self.members.on_adopt(msg)
            case ProbeResponse() | AdoptResponse():
                self.members.on_handshake_reply(msg)
            case InstallSnapshot():
                if self.cluster_id is not None:
                    self.core.step(msg)
                    self.snapshots.on_chunk(msg)
            case SnapshotAck():
                if self.cluster_id is not None:
                    self.core.step(msg)
                    self.snapshots.on_ack(msg)
            case _:
                if self.cluster_id is not None:
                    self.core.step(msg)

    # ------------------------------------------------------------------ client operations

    def check_capacity(self, size: int = 0) -> None:
        """Raise ``Overloaded`` (counted) if ``max_pending`` operations wait already, or the
        proposals waiting would hold more than ``max_pending_bytes`` with ``size`` more."""
        if self.outcomes.in_flight() >= self.options.max_pending:
            self.counters["overloaded"] += 1
            raise Overloaded()
        if size and self.outcomes.proposal_bytes + size > self.options.max_pending_bytes and self.outcomes.proposals:
            self.counters["overloaded"] += 1
            raise Overloaded(f"too many bytes of writes in flight (at most {self.options.max_pending_bytes})")

    def not_leader(self) -> NotLeader:
        """The error for a leader-only request on this node, naming the leader if known."""
        lid = self.core.leader_id
        m = self.core.membership.get(lid) if lid else None
        return NotLeader(lid, m.http_address if m and m.http_address else None)

    def propose(self, command: bytes) -> Waiter:
        self.disk.check_write()  # a node that cannot write says so, leader or not (disk_guard.py)
        if self.core.role != LEADER or self.core.lead_transferee is not None:
            raise self.not_leader()
        self.check_capacity(len(command))
        index, term = self.core.propose(command)
        w = Waiter("write")
        w.index, w.term, w.size = index, term, len(command)
        self.outcomes.add_proposal(index, w)
        self.counters["proposals"] += 1
        return w

    def read(self) -> Waiter:
        """A linearizable read point: resolves with the applied index at which local state may
        be read, once leadership was confirmed by a quorum and that index is applied here.
        A follower that knows the leader asks it for the read index (ReadIndexRequest) and
        serves the read itself once applied there; a candidate or leaderless node refuses."""
        w = self._admit_read()
        ctx = self.next_ctx
        self.next_ctx += 1
        self.core.read_index(ctx)
        self.outcomes.reads[ctx] = w
        return w

    def _admit_read(self) -> Waiter:
        """Refuse a read this node cannot serve (no leader known, overloaded), else count it."""
        core = self.core
        if core.role != LEADER and (core.role != FOLLOWER or core.leader_id is None or self.cluster_id is None):
            raise self.not_leader()
        self.disk.check_read()
        self.check_capacity()
        w = Waiter("read")
        self.counters["reads"] += 1
        return w

    def get(self, key: str) -> KeyRecord | None:
        return self.storage.get(key)

    def abandon(self, w: Waiter, detail: str = "timed out waiting for the outcome") -> None:
        """The caller stops waiting. A write's outcome becomes unknown; a read simply fails."""
        if w.done:
            return
        self.outcomes.forget(w)
        self.members.forget(w)
        w._finish(error=Unknown(detail) if w.kind != "read" else NoLeader(detail))
        self.changes.update()  # a join dropped in its handshake frees the way at once

    # ------------------------------------------------------------------ membership (see members.py)

    def pristine(self) -> bool:
        """Nothing but bootstrap entries and no one else in the configuration: safe to wipe."""
        return self.members.pristine()

    def join(self, node_id: str, raft_address: str, force: bool = False, update_address: bool = False) -> Waiter:
        return self.members.join(node_id, raft_address, force, update_address)

    def remove(self, node_id: str, force: bool = False) -> Waiter:
        return self.members.remove(node_id, force)

    def transfer(self, target: str | None, force: bool = False) -> Waiter:
        return self.members.transfer(target, force)

    def default_transfer_target(self) -> str | None:
        return self.members.default_transfer_target()

    def nodes(self, tick_ms: int) -> list[dict[str, Any]]:
        return self.members.nodes(tick_ms)

    # ------------------------------------------------------------------ the effect loop

    def process(self) -> None:
        if self.disk.suspended:
            if not self.disk.retry_due():
                return
            self._reload_after_disk_failure()
        core = self.core
        self.hand_over_ready()
        self.snapshots.maybe_compact()
        self.snapshots.stop_unless_leader()
        self.members.after_ready()
        self.changes.update()
        if core.has_ready():
            self.process()
            return
        self.members.sync_peers()

    def _reload_after_disk_failure(self) -> None:
        """The disk takes writes again (a probe write went through): rebuild the core from what is
        durable, as a restart would. The jobs submitted after the failed one were not run (the
        worker skips the rest of a failed generation: ``storage_jobs.FailGate``), and their
        completions are moot once ``load`` bumps the generation, so nothing the core believed
        written but is not can be built upon (a later save can never land after a missing one)."""
        self._load_durable(self.storage.load())
        self.disk.recovered()

    # ------------------------------------------------------------------ status

    def status(self) -> NodeStatus:
        st = self.core.status()
        role = st.role
        if self.cluster_id is None:
            role = "joining"
        return NodeStatus(
            node_id=self.id,
            role=role,
            term=st.term,
            leader_id=st.leader_id,
            commit_index=st.commit,
            applied_index=self.applied_index,
            last_log_index=st.last_index,
            cluster_id=self.cluster_id,
            snapshot_index=self.core.log.offset,
            log_first_index=self.core.log.first_index,
            members=tuple(MemberStatus(m.id, m.raft_address, m.http_address, m.voter) for m in st.membership.members),
            http_address=self.options.http_address,
            raft_address=self.options.raft_address,
            storage_error=self.disk.describe(),
        )
