"""NodeDriver: the synchronous glue of Raft core + storage + transport + key-value state machine.

Production (``node.runtime``, on Trio) and the deterministic simulator (``sim``) run this same
code; they differ only in the storage and transport they inject and in who calls ``tick``,
``receive`` and ``process``. Everything a client outcome depends on lives here, so the
simulator tests it: proposal tracking, read-index waits, the join handshake, and deciding
when an outcome is unknown.

``process()`` alone orders effects, for each Ready: persist (synced) -> send -> apply ->
advance. Messages that depend on a vote or on log entries therefore never leave before those
are durable, and an entry is applied only once (the applied index is stored in the same
transaction as the applied rows).

Outcome rules for a proposal at (index, term):
* the entry applied at that index has that term: it happened; the result is returned;
* a different entry was applied at that index: it certainly did not happen;
* the caller gave up first (timeout, lost leadership with no answer yet): unknown.
Leadership loss alone never fails a proposal: a new leader may still commit it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from beaver_vault.errors import (
    AddressInUse,
    BeaverVaultError,
    ConfigBusy,
    ForeignClusterData,
    IdentityMismatch,
    IncompleteJoin,
    InvariantViolation,
    JoinRefused,
    LastVoter,
    NoLeader,
    NoReachableQuorum,
    NotAMember,
    NotLeader,
    NoTransferTarget,
    OtherLeaderElected,
    Overloaded,
    RetiredNodeId,
    SupersededByLeader,
    TransferTimedOut,
    Unknown,
)
from beaver_vault.kv import state as kv_state
from beaver_vault.kv.state import KeyRecord, KVStore
from beaver_vault.node.snapshots import Installer, SnapshotSender
from beaver_vault.node.status import MemberStatus, NodeStatus
from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.core import FOLLOWER, LEADER, RaftCore, SnapshotMeta
from beaver_vault.raft.messages import (
    AdoptRequest,
    AdoptResponse,
    AppendRequest,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    Member,
    Membership,
    Message,
    ProbeRequest,
    ProbeResponse,
    SnapshotAck,
)
from beaver_vault.raft.ready import Ready
from beaver_vault.storage.base import Storage
from beaver_vault.transport.base import Transport


@dataclass(frozen=True, slots=True)
class DriverOptions:
    raft_address: str
    http_address: str = ""
    max_pending: int = 10_000  # proposals + reads + joins waiting for an outcome
    handshake_retry_ticks: int = 10
    snapshot_threshold: int = 10_000  # compact when the log holds more entries than this
    snapshot_chunk_bytes: int = 256 * 1024
    snapshot_timeout_ticks: int = 100  # a transfer silent for this long is abandoned
    snapshot_resend_ticks: int = 5  # resend the chunk in flight after this many silent ticks
    max_snapshot_senders: int = 2


class Waiter:
    """One client operation's future outcome. ``on_done`` is set by the owner (an Event.set in
    the Trio runtime, a callback in the simulator) and called exactly once."""

    __slots__ = ("done", "result", "error", "on_done", "kind", "index", "term")

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self.done = False
        self.result: Any = None
        self.error: BeaverVaultError | None = None
        self.on_done: Callable[[], None] | None = None
        self.index = 0
        self.term = 0

    def _finish(self, result: Any = None, error: BeaverVaultError | None = None) -> None:
        if self.done:
            return
        self.done = True
        self.result = result
        self.error = error
        if self.on_done is not None:
            self.on_done()


@dataclass(slots=True)
class _Join:
    node_id: str
    raft_address: str
    nonce: int
    waiter: Waiter
    phase: str = "probe"  # probe -> adopt -> commit
    http_address: str = ""
    ticks: int = 0


def _apply_entry(store: KVStore, entry: Entry) -> dict[str, Any] | None:
    if entry.kind == EntryKind.NORMAL:
        return kv_state.apply(store, entry.index, entry.data)
    return None


class NodeDriver:
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
        self.proposals: dict[int, Waiter] = {}  # index -> waiter
        self.reads: dict[int, Waiter] = {}  # ctx -> waiter, until confirmed
        self.read_waits: list[tuple[int, Waiter]] = []  # (read index, waiter), until applied
        # Read contexts start at a random point, so a leader's late answer to a read asked
        # before this node restarted can never be taken for the answer to a new read.
        self.next_ctx = self.rng.getrandbits(62)
        self.join_op: _Join | None = None
        self.config_waits: dict[int, Waiter] = {}  # config entry index -> waiter
        self.handshake_peers: dict[str, str] = {}  # probers we must be able to answer (bounded)
        self.senders: dict[str, SnapshotSender] = {}
        self.installer: Installer | None = None
        self.on_restore: Callable[[int], None] | None = None  # state replaced by a snapshot
        self.promotions: dict[str, Waiter] = {}  # learner id -> join waiting for its promotion
        self.transfer_wait: tuple[str, Waiter] | None = None
        self._peers_for: tuple[int, str | None] = (-1, None)
        self.applied_index = 0
        self._durable_term_vote: tuple[int, str | None] = (0, None)
        # Called for every applied entry with the state machine's result (watches listen here).
        self.on_applied: Callable[[int, dict[str, Any] | None], None] | None = None
        self.counters: dict[str, int] = {"proposals": 0, "reads": 0, "overloaded": 0, "applied": 0, "readies": 0}

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
        snap = None
        if st.snapshot_index:
            snap = SnapshotMeta(st.snapshot_index, st.snapshot_term, Membership.decode(st.snapshot_membership))
        self._load(st.cluster_id, st.hard_state, st.entries, st.applied_index, snap)

    def _load(
        self,
        cluster_id: str | None,
        hs: HardState,
        entries: tuple[Entry, ...],
        applied: int,
        snapshot: SnapshotMeta | None = None,
    ) -> None:
        self.cluster_id = cluster_id
        self._durable_term_vote = (hs.term, hs.vote)
        self.senders = {}
        self.installer = None
        self.core = RaftCore(self.id, self.raft_config, self.rng, hs, entries, applied, snapshot)
        self.applied_index = applied
        self.transport.set_cluster_id(cluster_id)
        self._peers_for = (-1, None)
        self._sync_peers()
        if self.core.membership.voters == (self.id,) and self.core.role != LEADER:
            self.core.campaign()  # alone: no reason to wait an election timeout

    # ------------------------------------------------------------------ inputs

    def tick(self) -> None:
        self.core.tick()
        if self.core.role == LEADER and self.core.ticks % (2 * self.options.handshake_retry_ticks) == 0:
            self._reintroduce()
        for pid, snd in list(self.senders.items()):
            snd.idle_ticks += 1
            if snd.idle_ticks > self.options.snapshot_timeout_ticks:
                self._stop_sender(pid, ok=False)
            elif snd.idle_ticks % self.options.snapshot_resend_ticks == 0 and self.core.role == LEADER:
                # The chunk or its ack may have been lost: send it again (receivers ack a
                # duplicate without staging it twice) rather than wait for the timeout.
                self.transport.send(snd.message(self.core.term, self.id))
        j = self.join_op
        if j is not None and j.phase in ("probe", "adopt"):
            j.ticks += 1
            if j.ticks % self.options.handshake_retry_ticks == 0:
                self._send_handshake(j)

    def receive(self, msg: Message) -> None:
        match msg:
            case ProbeRequest():
                if msg.reply_address and msg.src not in self.core.membership.ids:
                    # Answer a prober we do not know yet (a leader about to adopt us).
                    self.handshake_peers[msg.src] = msg.reply_address
                    self._peers_for = (-1, None)
                    self._sync_peers()
                self.transport.send(
                    ProbeResponse(
                        self.id,
                        msg.src,
                        msg.nonce,
                        self.id,
                        self.cluster_id or "",
                        self.options.http_address,
                        self.pristine(),
                    )
                )
            case AdoptRequest():
                self._handle_adopt(msg)
            case ProbeResponse() | AdoptResponse():
                self._handle_handshake_reply(msg)
            case InstallSnapshot():
                if self.cluster_id is not None:
                    self.core.step(msg)
                    self._receive_snapshot_chunk(msg)
            case SnapshotAck():
                if self.cluster_id is not None:
                    self.core.step(msg)
                    self._receive_snapshot_ack(msg)
            case _:
                if self.cluster_id is not None:
                    self.core.step(msg)

    # ------------------------------------------------------------------ client operations

    def _check_capacity(self) -> None:
        if len(self.proposals) + len(self.reads) + len(self.read_waits) >= self.options.max_pending:
            self.counters["overloaded"] += 1
            raise Overloaded()

    def _not_leader(self) -> NotLeader:
        lid = self.core.leader_id
        m = self.core.membership.get(lid) if lid else None
        return NotLeader(lid, m.http_address if m and m.http_address else None)

    def propose(self, command: bytes) -> Waiter:
        if self.core.role != LEADER or self.core.lead_transferee is not None:
            raise self._not_leader()
        self._check_capacity()
        index, term = self.core.propose(command)
        w = Waiter("write")
        w.index, w.term = index, term
        self.proposals[index] = w
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
        self.reads[ctx] = w
        return w

    def _admit_read(self) -> Waiter:
        """Refuse a read this node cannot serve (no leader known, overloaded), else count it."""
        core = self.core
        if core.role != LEADER and (core.role != FOLLOWER or core.leader_id is None or self.cluster_id is None):
            raise self._not_leader()
        self._check_capacity()
        w = Waiter("read")
        self.counters["reads"] += 1
        return w

    def get(self, key: str) -> KeyRecord | None:
        return self.storage.get(key)

    def abandon(self, w: Waiter, detail: str = "timed out waiting for the outcome") -> None:
        """The caller stops waiting. A write's outcome becomes unknown; a read simply fails."""
        if w.done:
            return
        if w.kind == "write" and self.proposals.get(w.index) is w:
            del self.proposals[w.index]
        for ctx, rw in list(self.reads.items()):
            if rw is w:
                del self.reads[ctx]
        self.read_waits = [(i, rw) for i, rw in self.read_waits if rw is not w]
        for idx, cw in list(self.config_waits.items()):
            if cw is w:
                del self.config_waits[idx]
        for nid, pw in list(self.promotions.items()):
            if pw is w:
                del self.promotions[nid]
        if self.transfer_wait is not None and self.transfer_wait[1] is w:
            self.transfer_wait = None
        if self.join_op is not None and self.join_op.waiter is w:
            self.join_op = None
            self._peers_for = (-1, None)
            self._sync_peers()
        w._finish(error=Unknown(detail) if w.kind != "read" else NoLeader(detail))

    # ------------------------------------------------------------------ membership

    def pristine(self) -> bool:
        """Nothing but bootstrap entries and no one else in the configuration: safe to wipe."""
        if self.core.log.offset > 0:
            return False  # a compacted log: it held client data once
        if any(e.kind == EntryKind.NORMAL for e in self.core.log.entries):
            return False
        return set(self.core.membership.ids) <= {self.id}

    def join(self, node_id: str, raft_address: str) -> Waiter:
        core = self.core
        if core.role != LEADER:
            raise self._not_leader()
        if not node_id or not raft_address:
            raise IncompleteJoin()
        membership = core.membership
        w = Waiter("config")
        existing = membership.get(node_id)
        if existing is not None and existing.raft_address == raft_address:
            w._finish(membership)  # joining again with the same id and address: nothing to do
            return w
        for m in membership.members:
            if m.raft_address == raft_address and m.id != node_id:
                raise AddressInUse(raft_address, m.id)
        why = core.config_change_blocker()
        if why is None and self.join_op is not None:
            why = f"joining {self.join_op.node_id} is in progress"
        if why is not None:
            raise ConfigBusy(f"cannot change membership now: {why}")
        if existing is not None:
            # Same id, new address: a configuration update, no handshake needed for the id.
            self._propose_config(membership.with_member(Member(node_id, raft_address, existing.http_address, existing.voter)), w)
            return w
        self._check_capacity()
        j = _Join(node_id, raft_address, self.rng.getrandbits(62), w)
        self.join_op = j
        self._sync_peers()
        self._send_handshake(j)
        return w

    def remove(self, node_id: str, force: bool = False) -> Waiter:
        core = self.core
        if core.role != LEADER:
            raise self._not_leader()
        membership = core.membership
        if membership.get(node_id) is None:
            raise NotAMember(node_id)
        if len(membership.voters) == 1 and node_id in membership.voters:
            raise LastVoter(node_id)
        why = core.config_change_blocker()
        if why is None and self.join_op is not None:
            why = f"joining {self.join_op.node_id} is in progress"
        if why is not None:
            raise ConfigBusy(f"cannot change membership now: {why}")
        new = membership.without(node_id)
        reachable = [v for v in new.voters if self._reachable(v)]
        if not force and len(reachable) < len(new.voters) // 2 + 1:
            raise NoReachableQuorum(node_id, len(reachable), len(new.voters))
        w = Waiter("config")
        self._propose_config(new, w)
        return w

    def _reachable(self, node_id: str) -> bool:
        core = self.core
        if node_id == self.id:
            return True
        pr = core.progress.get(node_id)
        return pr is not None and pr.last_contact_tick >= 0 and core.ticks - pr.last_contact_tick <= self.raft_config.election_ticks

    # ------------------------------------------------------------------ learners, transfer, nodes

    def _maybe_promote(self) -> None:
        """A learner that has caught up (matches the commit index and answers) becomes a voter;
        the join that added it is answered then."""
        core = self.core
        if core.role != LEADER or self.join_op is not None or core.config_change_blocker() is not None:
            return
        for m in core.membership.members:
            if m.voter:
                continue
            pr = core.progress.get(m.id)
            if pr is not None and pr.match >= core.commit and self._reachable(m.id):
                w = self.promotions.pop(m.id, None) or Waiter("config")
                self._propose_config(core.membership.with_member(Member(m.id, m.raft_address, m.http_address, True)), w)
                return

    def transfer(self, target: str | None) -> Waiter:
        core = self.core
        if core.role != LEADER:
            raise self._not_leader()
        others = [v for v in core.membership.voters if v != self.id]
        if target is None:
            if not others:
                raise NoTransferTarget()
            target = max(others, key=lambda v: (core.progress[v].match if v in core.progress else -1, v))
        if target == self.id:
            w = Waiter("transfer")
            w._finish(self.id)
            return w
        if self.transfer_wait is not None:
            raise ConfigBusy("a leadership transfer is already in progress")
        core.transfer_leadership(target)
        w = Waiter("transfer")
        self.transfer_wait = (target, w)
        return w

    def _check_transfer(self) -> None:
        if self.transfer_wait is None:
            return
        target, w = self.transfer_wait
        core = self.core
        if core.role == LEADER and core.lead_transferee is None:
            self.transfer_wait = None
            w._finish(error=TransferTimedOut(target))
        elif core.role != LEADER and core.leader_id is not None:
            self.transfer_wait = None
            if core.leader_id == target:
                w._finish(target)
            else:
                w._finish(error=OtherLeaderElected(target, core.leader_id))

    def nodes(self, tick_ms: int) -> list[dict[str, Any]]:
        core = self.core
        if core.role != LEADER:
            raise self._not_leader()
        out: list[dict[str, Any]] = []
        last = core.log.last_index
        for m in core.membership.members:
            contact: int | None
            if m.id == self.id:
                match, contact, reachable = core.log.stable, 0, True
                role = "leader"
            else:
                pr = core.progress.get(m.id)
                match = pr.match if pr else 0
                contact = (core.ticks - pr.last_contact_tick) * tick_ms if pr and pr.last_contact_tick >= 0 else None
                reachable = self._reachable(m.id)
                role = "follower" if m.voter else "learner"
            out.append(
                {
                    "id": m.id,
                    "role": role,
                    "voter": m.voter,
                    "raft_address": m.raft_address,
                    "http_address": m.http_address,
                    "match_index": match,
                    "lag": max(0, last - match),
                    "last_contact_ms": contact,
                    "reachable": reachable,
                }
            )
        return out

    def _propose_config(self, membership: Membership, w: Waiter) -> None:
        index, term = self.core.propose_config(membership)
        w.index, w.term = index, term
        self.config_waits[index] = w

    def _send_handshake(self, j: _Join) -> None:
        if j.phase == "probe":
            self.transport.send(ProbeRequest(self.id, j.node_id, j.nonce, self.options.raft_address))
        elif j.phase == "adopt" and self.cluster_id is not None:
            future = self.core.membership.with_member(Member(j.node_id, j.raft_address, j.http_address))
            self.transport.send(AdoptRequest(self.id, j.node_id, j.nonce, self.cluster_id, future.encode()))

    def _handle_handshake_reply(self, msg: ProbeResponse | AdoptResponse) -> None:
        j = self.join_op
        if j is None or msg.nonce != j.nonce or msg.src != j.node_id:
            return
        if self.core.role != LEADER:
            self._end_join(error=self._not_leader())
            return
        if isinstance(msg, ProbeResponse) and j.phase == "probe":
            if msg.node_id != j.node_id:
                self._end_join(error=IdentityMismatch(j.node_id, j.raft_address, msg.node_id))
                return
            j.http_address = msg.http_address
            if msg.cluster_id == self.cluster_id:
                self._commit_join(j)  # already one of ours (an earlier attempt adopted it)
            elif msg.pristine and j.node_id in self.core.membership.retired:
                self._end_join(error=RetiredNodeId(j.node_id))
            elif not msg.pristine:
                self._end_join(error=ForeignClusterData(j.node_id, msg.cluster_id))
            else:
                j.phase = "adopt"
                self._send_handshake(j)
        elif isinstance(msg, AdoptResponse) and j.phase == "adopt":
            if msg.ok:
                self._commit_join(j)
            else:
                self._end_join(error=JoinRefused(j.node_id, msg.reason))

    def _commit_join(self, j: _Join) -> None:
        j.phase = "commit"
        try:
            learner = Waiter("config")
            self._propose_config(
                self.core.membership.with_member(Member(j.node_id, j.raft_address, j.http_address, voter=False)),
                learner,
            )
            # The join is answered when the node is a voter (after it caught up as a learner).
            self.promotions[j.node_id] = j.waiter
        except BeaverVaultError as e:
            self._end_join(error=e)
            return
        self.join_op = None

    def _end_join(self, error: BeaverVaultError) -> None:
        j = self.join_op
        self.join_op = None
        self._peers_for = (-1, None)
        self._sync_peers()
        if j is not None:
            j.waiter._finish(error=error)

    def _handle_adopt(self, msg: AdoptRequest) -> None:
        if self.cluster_id == msg.cluster_id:
            # A retransmission, or the leader re-introducing itself: we may have restarted
            # before the configuration reached our log, or know only an older one, and so not
            # know where the leader is. Learn the addresses (the log's configuration wins).
            ok, reason = True, ""
            self._learn_addresses(msg.members)
        elif not self.pristine():
            ok, reason = False, "this node holds data and will not be wiped"
        else:
            # Wipe log, hard state and key-value state and take the cluster id: one synced step,
            # before any entry of the new cluster is accepted.
            self.storage.reset(msg.cluster_id)
            self._load(msg.cluster_id, HardState(), (), 0)
            # Until the configuration arrives through the log, reach the cluster at these addresses.
            self._learn_addresses(msg.members)
            ok, reason = True, ""
        self.transport.send(AdoptResponse(self.id, msg.src, msg.nonce, ok, reason))

    def _learn_addresses(self, encoded: bytes) -> None:
        members = Membership.decode(encoded) if encoded else Membership()
        self.handshake_peers.update({m.id: m.raft_address for m in members.members if m.id != self.id})
        self._peers_for = (-1, None)
        self._sync_peers()

    def _reintroduce(self) -> None:
        """Leader: members silent for two election timeouts may not know our address (they
        restarted before any configuration reached their log, or hold an older one): send them
        the cluster's addresses (an AdoptRequest for our own cluster id wipes nothing)."""
        core = self.core
        if self.cluster_id is None:
            return
        stale = 2 * self.raft_config.election_ticks
        encoded = core.membership.encode()
        for m in core.membership.members:
            if m.id == self.id:
                continue
            pr = core.progress.get(m.id)
            if pr is None or pr.last_contact_tick < 0 or core.ticks - pr.last_contact_tick > stale:
                self.transport.send(AdoptRequest(self.id, m.id, 0, self.cluster_id, encoded))

    def _sync_peers(self) -> None:
        core = self.core
        key = (core.membership_index, self.join_op.node_id if self.join_op else None)
        if key == self._peers_for:
            return
        self._peers_for = key
        while len(self.handshake_peers) > 16:
            del self.handshake_peers[next(iter(self.handshake_peers))]
        peers = dict(self.handshake_peers)
        peers.update({m.id: m.raft_address for m in core.membership.members if m.id != self.id})
        if self.join_op is not None:
            peers[self.join_op.node_id] = self.join_op.raft_address
        self.transport.set_peers(peers)

    # ------------------------------------------------------------------ the effect loop

    def process(self) -> None:
        core = self.core
        while core.has_ready():
            rd = core.ready()
            self.counters["readies"] += 1
            self._handle_ready(rd)
            core.advance(rd)
            if self.applied_index - core.log.offset > self.options.snapshot_threshold:
                self._compact()
        if self.senders and core.role != LEADER:
            for pid in list(self.senders):
                self._stop_sender(pid, ok=False)
        if self.promotions and core.role != LEADER:
            # A join waits for its learner's promotion, which only a leader performs: once we
            # lose leadership, whether (and when) it happens is not ours to tell.
            waiting, self.promotions = self.promotions, {}
            for w in waiting.values():
                w._finish(error=Unknown("leadership changed while the new node was being added; retry the join"))
        self._maybe_promote()
        self._check_transfer()
        if core.has_ready():
            self.process()
            return
        self._sync_peers()

    def _handle_ready(self, rd: Ready) -> None:
        # A leader may replicate entries before they are on its own disk (Raft paper, 10.2.1):
        # it counts itself only after advance(), and its term is already durable. Anything
        # else (votes, acknowledgements, a new term) leaves only after the sync.
        early = (
            self.core.role == LEADER
            and (rd.hard_state is None or (rd.hard_state.term, rd.hard_state.vote) == self._durable_term_vote)
            and all(isinstance(m, AppendRequest) for m in rd.messages)
        )
        if early:
            for m in rd.messages:
                self.transport.send(m)
        if rd.hard_state is not None or rd.entries:
            self.storage.save(rd.hard_state, rd.entries)
            if rd.hard_state is not None:
                self._durable_term_vote = (rd.hard_state.term, rd.hard_state.vote)
        if not early:
            for m in rd.messages:
                self.transport.send(m)
        if rd.committed:
            if rd.committed[0].index != self.applied_index + 1:
                raise InvariantViolation(
                    f"{self.id}: apply gap: applied {self.applied_index}, next {rd.committed[0].index}"
                )
            results = self.storage.apply(rd.committed, _apply_entry)
            self.applied_index = rd.committed[-1].index
            self.counters["applied"] += len(rd.committed)
            for e, result in zip(rd.committed, results, strict=True):
                self._resolve_applied(e, result)
                if self.on_applied is not None:
                    self.on_applied(e.index, result)
        for pid in rd.snapshots:
            self._start_sender(pid)
        for rs in rd.read_states:
            w = self.reads.pop(rs.ctx, None)
            if w is not None:
                self.read_waits.append((rs.index, w))
        for ctx in rd.dropped_reads:
            w = self.reads.pop(ctx, None)
            if w is not None:
                w._finish(error=NoLeader("leadership lost before the read was confirmed"))
        if self.read_waits:
            keep = []
            for idx, w in self.read_waits:
                if idx <= self.applied_index:
                    w._finish(self.applied_index)
                else:
                    keep.append((idx, w))
            self.read_waits = keep

    def _resolve_applied(self, e: Entry, result: dict[str, Any] | None) -> None:
        w = self.proposals.pop(e.index, None)
        if w is not None:
            if w.term == e.term:
                w._finish(result)
            else:
                w._finish(error=SupersededByLeader(e.index, w.term))
        cw = self.config_waits.pop(e.index, None)
        if cw is not None:
            if cw.term == e.term:
                cw._finish(self.core.membership if e.kind != EntryKind.CONFIG else Membership.decode(e.data))
            else:
                cw._finish(error=SupersededByLeader(e.index, cw.term, config=True))
        if e.kind == EntryKind.CONFIG and self.promotions:
            # A join waits for its learner's promotion. Another leader may have proposed it (we
            # lost leadership meanwhile): answer the join when ANY applied configuration makes
            # the node a voter, or it would hang until the caller's timeout.
            applied = Membership.decode(e.data)
            for nid in [n for n in self.promotions if (m := applied.get(n)) is not None and m.voter]:
                self.promotions.pop(nid)._finish(applied)

    # ------------------------------------------------------------------ snapshots

    def _compact(self) -> None:
        """Keep the log bounded: compact up to the applied index, less a margin (a tenth of
        the threshold) so a briefly slow follower still catches up from the log."""
        core = self.core
        index = self.applied_index - self.options.snapshot_threshold // 10
        if index <= core.log.offset or index > core.log.stable:
            return
        self.storage.compact(index, core.log.term(index), core.membership_at(index).encode())
        core.compact(index)
        self.counters["compactions"] = self.counters.get("compactions", 0) + 1

    def _start_sender(self, pid: str) -> None:
        core = self.core
        if core.role != LEADER:
            return
        old = self.senders.pop(pid, None)
        if old is not None:
            # The core asks again only once it left SNAPSHOT state for pid: the follower answered
            # from the snapshot still being streamed while the log was compacted past that
            # snapshot. The old transfer is obsolete; ignoring the request would leave the core
            # in SNAPSHOT state waiting for a transfer that never comes. No snapshot_finished for
            # the old one: the core has moved on (a late ack for it no longer matches).
            close = getattr(old.chunks, "close", None)
            if close is not None:
                close()
        if len(self.senders) >= self.options.max_snapshot_senders:
            core.snapshot_finished(pid, ok=False)  # try again later
            return
        index, chunks = self.storage.snapshot_reader(self.options.snapshot_chunk_bytes)
        snd = SnapshotSender(pid, index, core.log.term(index), core.membership_at(index).encode(), chunks)
        self.senders[pid] = snd
        self.counters["snapshots_sent"] = self.counters.get("snapshots_sent", 0) + 1
        self.transport.send(snd.first(core.term, self.id))

    def _stop_sender(self, pid: str, ok: bool) -> None:
        snd = self.senders.pop(pid, None)
        if snd is not None:
            close = getattr(snd.chunks, "close", None)
            if close is not None:
                close()
            self.core.snapshot_finished(pid, ok, snd.index if ok else 0)

    def _receive_snapshot_ack(self, ack: SnapshotAck) -> None:
        snd = self.senders.get(ack.src)
        core = self.core
        if snd is None or ack.index != snd.index or ack.seq != snd.seq:
            return
        if core.role != LEADER or ack.term != core.term or not ack.ok:
            self._stop_sender(ack.src, ok=False)
            return
        nxt = snd.on_ack(ack, core.term, self.id)
        if nxt is None:
            self._stop_sender(ack.src, ok=True)
        else:
            self.transport.send(nxt)

    def _receive_snapshot_chunk(self, m: InstallSnapshot) -> None:
        core = self.core

        def ack(ok: bool) -> None:
            self.transport.send(SnapshotAck(core.term, self.id, m.src, m.index, m.seq, ok))

        if m.term != core.term or core.role != FOLLOWER:
            ack(False)
            return
        ins0 = self.installer
        if m.seq == 0 and ins0 is not None and (ins0.leader, ins0.term, ins0.index) == (m.src, m.term, m.index):
            ack(True)  # a duplicate of the first chunk: keep what is staged
            return
        if m.seq == 0:
            if core.log.matches(m.index, m.snap_term) or m.index <= core.commit:
                # We hold that entry already (Log Matching: and all before it): no transfer needed.
                self.installer = None
                ack(False)
                if core.log.matches(m.index, m.snap_term):
                    core.snapshot_matches(m.src, m.index)
                return
            self.storage.install_begin(m.index)
            self.installer = Installer(m.src, m.term, m.index, m.snap_term)
        else:
            ins = self.installer
            if ins is not None and (ins.leader, ins.term, ins.index) == (m.src, m.term, m.index) and m.seq < ins.next_seq:
                ack(True)  # a duplicate (a resend, or the network): already staged
                return
            if ins is None or (ins.leader, ins.term, ins.index, ins.next_seq) != (m.src, m.term, m.index, m.seq):
                ack(False)
                return
            ins.next_seq += 1
            if m.done and (core.log.matches(m.index, m.snap_term) or m.index <= core.commit):
                # Appends overtook the transfer: the log now holds (or committed past) the
                # snapshot's index. Installing would roll storage back behind the core (log
                # truncated to m.index while the core's log goes on). Drop the staged copy.
                self.installer = None
                ack(False)
                return
        self.storage.install_chunk(m.seq, m.data)
        if m.done:
            # One durable step replaces state, applied index and log; then the core follows.
            self.storage.install_finish(m.index, m.snap_term, m.membership)
            self.installer = None
            membership = Membership.decode(m.membership)
            core.restore(m.index, m.snap_term, membership)
            self.applied_index = m.index
            self._peers_for = (-1, None)
            self.counters["snapshots_installed"] = self.counters.get("snapshots_installed", 0) + 1
            if self.on_restore is not None:
                self.on_restore(m.index)
        ack(True)

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
        )
