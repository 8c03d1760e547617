"""Membership changes, driven by the node driver: joins (probe, adopt, learner, promotion),
removals, leadership transfers, and the raft addresses the transport must know.

A join runs a handshake on the raft port before any configuration changes: the leader probes
the node at the given address (``ProbeRequest``: who are you, are you pristine?), adopts a
pristine node into the cluster (``AdoptRequest``: it wipes its state and takes the cluster id,
durably, before answering), then adds it as a learner; the join is answered once the learner
has caught up and been promoted to voter. A removed id may not rejoin with a fresh disk
(``RetiredNodeId``). One change at a time: the core refuses a second while one is uncommitted,
and a join in its handshake blocks the others (``ConfigBusy``).

Synchronous like the driver; it reaches the core, the transport and the storage through the
driver (``d``), whose core is replaced when a snapshot or an adoption reloads the node.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beaver_vault.errors import (
    AddressInUse,
    AddressUpdateNotRequested,
    BeaverVaultError,
    ConfigBusy,
    ForeignClusterData,
    IdentityMismatch,
    IncompleteJoin,
    JoinRefused,
    LastVoter,
    NotAMember,
    NoTransferTarget,
    OtherLeaderElected,
    RetiredNodeId,
    TransferTimedOut,
    Unknown,
)
from beaver_vault.node.outcomes import Waiter
from beaver_vault.raft.core import LEADER
from beaver_vault.raft.messages import (
    AdoptRequest,
    AdoptResponse,
    Entry,
    EntryKind,
    HardState,
    Member,
    Membership,
    ProbeRequest,
    ProbeResponse,
)

if TYPE_CHECKING:
    from beaver_vault.node.driver import NodeDriver

HANDSHAKE_PEERS_MAX = 16  # probers we answer without knowing them from a configuration


@dataclass(slots=True)
class _Join:
    node_id: str
    raft_address: str
    nonce: int
    waiter: Waiter
    phase: str = "probe"  # probe -> adopt -> commit
    http_address: str = ""
    ticks: int = 0


class MembershipChanges:
    def __init__(self, driver: NodeDriver) -> None:
        self.d = driver
        self.join_op: _Join | None = None
        self.handshake_peers: dict[str, str] = {}  # probers we must be able to answer (bounded)
        # Ids in handshake_peers known only as probers: answered, but never a Raft sender.
        self.probers: set[str] = set()
        self.promotions: dict[str, Waiter] = {}  # learner id -> join waiting for its promotion
        self.transfer_wait: tuple[str, Waiter] | None = None
        self._peers_for: tuple[int, int, str | None] = (-1, 0, None)
        self.adopting = False  # an adoption's wipe is on the storage worker

    # ------------------------------------------------------------------ driver hooks

    def invalidate_peers(self) -> None:
        """The configuration may have changed under us: tell the transport again."""
        self._peers_for = (-1, 0, None)

    def on_tick_leader(self) -> None:
        if self.d.core.ticks % (2 * self.d.options.handshake_retry_ticks) == 0:
            self._reintroduce()

    def on_tick_handshake(self) -> None:
        j = self.join_op
        if j is not None and j.phase in ("probe", "adopt"):
            j.ticks += 1
            if j.ticks % self.d.options.handshake_retry_ticks == 0:
                self._send_handshake(j)

    def on_probe(self, msg: ProbeRequest) -> None:
        d = self.d
        if msg.reply_address and msg.src not in d.core.membership.ids:
            # Answer a prober we do not know yet (a leader about to adopt us).
            if msg.src not in self.handshake_peers:
                self.probers.add(msg.src)
            self.handshake_peers[msg.src] = msg.reply_address
            self._peers_for = (-1, 0, None)
            self.sync_peers()
        d.transport.send(
            ProbeResponse(d.id, msg.src, msg.nonce, d.id, d.cluster_id or "", d.options.http_address, self.pristine())
        )

    def after_ready(self) -> None:
        """After the Readies of one ``process()``: settle promotions and transfers."""
        if self.promotions and self.d.core.role != LEADER:
            # A join waits for its learner's promotion, which only a leader performs: once we
            # lose leadership, whether (and when) it happens is not ours to tell.
            waiting, self.promotions = self.promotions, {}
            for w in waiting.values():
                w._finish(error=Unknown("leadership changed while the new node was being added; retry the join"))
        self._maybe_promote()
        self._check_transfer()

    def config_applied(self, e: Entry) -> None:
        if e.kind == EntryKind.CONFIG and self.promotions:
            # A join waits for its learner's promotion. Another leader may have proposed it (we
            # lost leadership meanwhile): answer the join when ANY applied configuration makes
            # the node a voter, or it would hang until the caller's timeout.
            applied = Membership.decode(e.data)
            for nid in [n for n in self.promotions if (m := applied.get(n)) is not None and m.voter]:
                self.promotions.pop(nid)._finish(applied)

    def forget(self, w: Waiter) -> None:
        """The caller stopped waiting for ``w``."""
        for nid, pw in list(self.promotions.items()):
            if pw is w:
                del self.promotions[nid]
        if self.transfer_wait is not None and self.transfer_wait[1] is w:
            self.transfer_wait = None
        if self.join_op is not None and self.join_op.waiter is w:
            self.join_op = None
            self._peers_for = (-1, 0, None)
            self.sync_peers()

    # ------------------------------------------------------------------ changes

    def pristine(self) -> bool:
        """Nothing but bootstrap entries and no one else in the configuration: safe to wipe."""
        if self.d.core.log.offset > 0:
            return False  # a compacted log: it held client data once
        log = self.d.core.log
        if log.cache_first > log.first_index:
            return False  # entries left the in-memory cache: far more than bootstrap entries
        if any(e.kind == EntryKind.NORMAL for e in log.entries):
            return False
        return set(self.d.core.membership.ids) <= {self.d.id}

    def join(self, node_id: str, raft_address: str, force: bool = False, update_address: bool = False) -> Waiter:
        """Add ``node_id`` at ``raft_address``; or, with ``update_address``, re-point an existing
        member to a new address. A join that names a member at another address without
        ``update_address`` is refused (``AddressUpdateNotRequested``): moving a member's traffic
        elsewhere must be an explicit request, never a side effect of a (forged or mistaken)
        join. ``update_address`` for a node that is not a member is ``NotAMember``."""
        core = self.d.core
        if core.role != LEADER:
            raise self.d.not_leader()
        if not node_id or not raft_address:
            raise IncompleteJoin()
        membership = core.membership
        w = Waiter("config")
        existing = membership.get(node_id)
        if existing is None and update_address:
            raise NotAMember(node_id)
        if existing is not None and existing.raft_address == raft_address:
            if existing.voter:
                w._finish(membership)  # joining again with the same id and address: nothing to do
                return w
            # A learner still catching up: answer this join too once it is a voter.
            return self.d.changes.wait_for_join(node_id)
        j = self.join_op
        if j is not None and j.node_id == node_id and j.raft_address == raft_address:
            return self.d.changes.wait_for_join(node_id)  # the same join, still in its handshake
        for m in membership.members:
            if m.raft_address == raft_address and m.id != node_id:
                raise AddressInUse(raft_address, m.id)
        if existing is not None and not update_address:
            raise AddressUpdateNotRequested(node_id, existing.raft_address, raft_address)
        self.d.changes.admit("join", node_id, force=force)
        why = core.config_change_blocker()
        if why is None and self.join_op is not None:
            why = f"joining {self.join_op.node_id} is in progress"
        if why is not None:
            raise ConfigBusy(f"cannot change membership now: {why}")
        if existing is not None:
            # Same id, new address: a configuration update, no handshake needed for the id.
            self._propose_config(membership.with_member(Member(node_id, raft_address, existing.http_address, existing.voter)), w)
            self.d.changes.begin("join", node_id, w, "commit")
            return w
        self.d.check_capacity()
        j = _Join(node_id, raft_address, self.d.rng.getrandbits(62), w)
        self.join_op = j
        self.sync_peers()
        self._send_handshake(j)
        self.d.changes.begin("join", node_id, w, "handshake")
        return w

    def remove(self, node_id: str, force: bool = False) -> Waiter:
        core = self.d.core
        if core.role != LEADER:
            raise self.d.not_leader()
        membership = core.membership
        if membership.get(node_id) is None:
            raise NotAMember(node_id)
        if len(membership.voters) == 1 and node_id in membership.voters:
            raise LastVoter(node_id)
        # One change at a time, and the what-if check (node/membership_change.py): refused
        # with the analysis if the remaining voters would have no reachable quorum, unless forced.
        self.d.changes.admit("remove", node_id, force=force)
        why = core.config_change_blocker()
        if why is None and self.join_op is not None:
            why = f"joining {self.join_op.node_id} is in progress"
        if why is not None:
            raise ConfigBusy(f"cannot change membership now: {why}")
        new = membership.without(node_id)
        w = Waiter("config")
        self._propose_config(new, w)
        self.d.changes.begin("remove", node_id, w, "commit")
        return w

    def _reachable(self, node_id: str) -> bool:
        core = self.d.core
        if node_id == self.d.id:
            return True
        pr = core.progress.get(node_id)
        return pr is not None and pr.last_contact_tick >= 0 and core.ticks - pr.last_contact_tick <= self.d.raft_config.election_ticks

    def _maybe_promote(self) -> None:
        """A learner that has caught up (matches the commit index and answers) becomes a voter;
        the join that added it is answered then."""
        core = self.d.core
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

    def default_transfer_target(self) -> str | None:
        """The most up-to-date reachable voter (any voter if none is reachable), None if alone."""
        core = self.d.core
        others = [v for v in core.membership.voters if v != self.d.id]
        if not others:
            return None
        return max(
            others,
            key=lambda v: (self._reachable(v), core.progress[v].match if v in core.progress else -1, v),
        )

    def transfer(self, target: str | None, force: bool = False) -> Waiter:
        core = self.d.core
        if core.role != LEADER:
            raise self.d.not_leader()
        if target is None:
            target = self.default_transfer_target()
            if target is None:
                raise NoTransferTarget()
        if target == self.d.id:
            w = Waiter("transfer")
            w._finish(self.d.id)
            return w
        self.d.changes.admit("transfer", target, force=force)
        if self.transfer_wait is not None:
            raise ConfigBusy("a leadership transfer is already in progress")
        core.transfer_leadership(target)
        w = Waiter("transfer")
        self.transfer_wait = (target, w)
        self.d.changes.begin("transfer", target, w, "transfer")
        return w

    def _check_transfer(self) -> None:
        if self.transfer_wait is None:
            return
        target, w = self.transfer_wait
        core = self.d.core
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
        core = self.d.core
        if core.role != LEADER:
            raise self.d.not_leader()
        out: list[dict[str, Any]] = []
        last = core.log.last_index
        for m in core.membership.members:
            contact: int | None
            if m.id == self.d.id:
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
                    # A snapshot being streamed to it: bytes acknowledged of about how many.
                    "snapshot": snd.progress() if (snd := self.d.snapshots.senders.get(m.id)) is not None else None,
                }
            )
        return out

    def _propose_config(self, membership: Membership, w: Waiter) -> None:
        index, term = self.d.core.propose_config(membership)
        w.index, w.term = index, term
        self.d.outcomes.config_waits[index] = w

    def _send_handshake(self, j: _Join) -> None:
        if j.phase == "probe":
            self.d.transport.send(ProbeRequest(self.d.id, j.node_id, j.nonce, self.d.options.raft_address))
        elif j.phase == "adopt" and self.d.cluster_id is not None:
            future = self.d.core.membership.with_member(Member(j.node_id, j.raft_address, j.http_address))
            self.d.transport.send(AdoptRequest(self.d.id, j.node_id, j.nonce, self.d.cluster_id, future.encode()))

    def on_handshake_reply(self, msg: ProbeResponse | AdoptResponse) -> None:
        j = self.join_op
        if j is None or msg.nonce != j.nonce or msg.src != j.node_id:
            return
        if self.d.core.role != LEADER:
            self._end_join(error=self.d.not_leader())
            return
        if isinstance(msg, ProbeResponse) and j.phase == "probe":
            if msg.node_id != j.node_id:
                self._end_join(error=IdentityMismatch(j.node_id, j.raft_address, msg.node_id))
                return
            j.http_address = msg.http_address
            if msg.cluster_id == self.d.cluster_id:
                self._commit_join(j)  # already one of ours (an earlier attempt adopted it)
            elif msg.pristine and j.node_id in self.d.core.membership.retired:
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
                self.d.core.membership.with_member(Member(j.node_id, j.raft_address, j.http_address, voter=False)),
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
        self._peers_for = (-1, 0, None)
        self.sync_peers()
        if j is not None:
            j.waiter._finish(error=error)

    def on_adopt(self, msg: AdoptRequest) -> None:
        if self.d.cluster_id == msg.cluster_id:
            # A retransmission, or the leader re-introducing itself: we may have restarted
            # before the configuration reached our log, or know only an older one, and so not
            # know where the leader is. Learn the addresses (the log's configuration wins).
            ok, reason = True, ""
            self._learn_addresses(msg.members)
        elif not self.pristine():
            ok, reason = False, "this node holds data and will not be wiped"
        else:
            # Wipe log, hard state and key-value state and take the cluster id: one synced step
            # on the storage worker, before any entry of the new cluster is accepted; answer
            # once it is durable. A repeated request meanwhile is ignored (the joiner retries).
            if self.adopting:
                return
            self.adopting = True
            cluster_id = msg.cluster_id

            def adopted(_: object) -> None:
                self.adopting = False
                self.d.load(cluster_id, HardState(), (), 0)
                # Until the configuration arrives through the log, reach the cluster at these addresses.
                self._learn_addresses(msg.members)
                self.d.transport.send(AdoptResponse(self.d.id, msg.src, msg.nonce, True, ""))

            self.d.submit("reset", lambda s: s.reset(cluster_id), adopted)
            return
        self.d.transport.send(AdoptResponse(self.d.id, msg.src, msg.nonce, ok, reason))

    def _learn_addresses(self, encoded: bytes) -> None:
        members = Membership.decode(encoded) if encoded else Membership()
        self.handshake_peers.update({m.id: m.raft_address for m in members.members if m.id != self.d.id})
        self.probers.difference_update(m.id for m in members.members)
        self._peers_for = (-1, 0, None)
        self.sync_peers()

    def _reintroduce(self) -> None:
        """Leader: members silent for two election timeouts may not know our address (they
        restarted before any configuration reached their log, or hold an older one): send them
        the cluster's addresses (an AdoptRequest for our own cluster id wipes nothing)."""
        core = self.d.core
        if self.d.cluster_id is None:
            return
        stale = 2 * self.d.raft_config.election_ticks
        encoded = core.membership.encode()
        for m in core.membership.members:
            if m.id == self.d.id:
                continue
            pr = core.progress.get(m.id)
            if pr is None or pr.last_contact_tick < 0 or core.ticks - pr.last_contact_tick > stale:
                self.d.transport.send(AdoptRequest(self.d.id, m.id, 0, self.d.cluster_id, encoded))

    def known_sender(self, src: str) -> bool:
        """May ``src`` send us Raft messages? Members, retired members (a leader that removed
        itself hands over with TimeoutNow after its removal is in our log), the node being
        joined, and the cluster an AdoptRequest introduced -- never a mere prober."""
        m = self.d.core.membership
        if src in m.ids or src in m.retired or (src in self.handshake_peers and src not in self.probers):
            return True
        return self.join_op is not None and src == self.join_op.node_id

    def sync_peers(self) -> None:
        core = self.d.core
        key = (core.membership_index, len(core.configs), self.join_op.node_id if self.join_op else None)
        if key == self._peers_for:
            return
        self._peers_for = key
        while len(self.handshake_peers) > HANDSHAKE_PEERS_MAX:  # probers go first: they cannot evict the cluster
            first = next(iter(self.handshake_peers))
            oldest = next((p for p in self.handshake_peers if p in self.probers), first)
            self.probers.discard(oldest)
            del self.handshake_peers[oldest]
        peers = dict(self.handshake_peers)
        # Every configuration still in the log, the latest last: a member just removed by an
        # entry not yet committed (a leader removing itself, say) must still get our answers,
        # which leave only once the entry is durable here, after this configuration took effect.
        for _, membership in core.configs:
            peers.update({m.id: m.raft_address for m in membership.members if m.id != self.d.id})
        if self.join_op is not None:
            peers[self.join_op.node_id] = self.join_op.raft_address
        self.d.transport.set_peers(peers)
