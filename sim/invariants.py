"""The safety invariants of a simulated run, and what the world has seen committed so far.

Theory of operation
-------------------
``Invariants`` watches every node after every step (``check_node``), every vote sent or made
durable (``check_vote``), every apply and snapshot install (``check_applied``,
``check_state``) and every crash (``check_durable_majority``), and holds what those checks
compare against: the leader of each term, the entries seen committed (with the term in which
their commitment was first seen), the durable votes, a fingerprint of the key-value state at
each applied index, and the latest configuration seen committed.

The invariants: at most one leader per term; one vote per term per node; an entry that any
node considered committed never changes (compared with the first one seen at that index); a
new leader holds every entry committed so far; a node whose removal was committed never leads
again; entries applied match the committed ones, and two nodes at the same applied index hold
the same key-value state; after a crash the last committed entry is still held by a majority.
A broken one raises ``SimFailure("safety", ...)``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from beaver_vault.kv.state import KeyRecord
from beaver_vault.node.driver import NodeDriver
from beaver_vault.raft.core import LEADER
from beaver_vault.raft.messages import Entry, EntryKind, Membership
from sim.failures import SimFailure

if TYPE_CHECKING:
    from sim.machine import SimNode
    from sim.world import World


class StateLike(Protocol):
    """What the invariants read of a node's applied state: a ``MemoryStorage``, or the view of
    a SQLite file (``sim.sqlite_disk.StateView``)."""

    @property
    def applied_index(self) -> int: ...

    def items(self) -> list[tuple[str, KeyRecord]]: ...


def fingerprint(storage: StateLike) -> bytes:
    # repr of frozen dataclasses and str keys: stable across processes (no hash randomisation).
    return hashlib.blake2b(repr(storage.items()).encode(), digest_size=16).digest()


class Invariants:
    def __init__(self, world: World) -> None:
        self.w = world
        self.leaders: dict[int, str] = {}
        # index -> (entry, term in which its commitment was first seen); a dict, not a list:
        # a node restarted from a snapshot reports commitment from past its snapshot only.
        self.committed: dict[int, tuple[Entry, int]] = {}
        self.last_committed = 0
        self.votes: dict[tuple[str, int, int], str] = {}  # (voter, disk generation, term) -> candidate
        self.states: dict[int, bytes] = {}
        # The latest configuration any node saw committed, and the index it was seen at.
        self.config = Membership()
        self.config_index = 0

    def _fail(self, detail: str) -> None:
        raise SimFailure("safety", detail)

    def check_node(self, node: SimNode, d: NodeDriver) -> None:
        """After a step of ``node``: votes, leaders, and the entries it now considers committed."""
        w = self.w
        core = d.core
        term, vote = d.durable_term_vote
        if vote is not None:
            # Durable votes only: a vote still on its way to the disk has told no one yet.
            self.check_vote(node.id, term, vote)
        if core.role == LEADER:
            holder = self.leaders.get(core.term)
            if holder is None:
                self.leaders[core.term] = node.id
                w.stats["elections"] += 1
                w.log(f"{node.id} LEADER term {core.term}")
                # Membership: a node whose removal was committed never leads again (unless a
                # later configuration, appended after that one, re-added it), and a leader is a
                # voter of its own configuration.
                own = core.membership
                if node.id not in own.voters:
                    self._fail(f"{node.id} leads term {core.term} but is not a voter of its configuration {own.voters}")
                if node.id not in self.config.voters and core.membership_index <= self.config_index:
                    self._fail(
                        f"{node.id} leads term {core.term} though the committed configuration at {self.config_index} "
                        f"(voters {','.join(self.config.voters)}) excludes it"
                    )
                log = core.log
                # Leader completeness: an entry committed in term X is in the log of every leader
                # of a term > X. (A leader of an older term, elected late, may lack it.)
                for e, seen_in in self.committed.values():
                    if e.index <= log.offset:
                        continue  # compacted: covered by the snapshot (state checked on install)
                    if seen_in < core.term and (
                        e.index > log.last_index
                        or (log.entry(e.index) != e if log.cached(e.index) else log.term(e.index) != e.term)
                    ):
                        self._fail(
                            f"leader completeness: {node.id} leads term {core.term} without entry {e.index} "
                            f"(term {e.term}) committed by term {seen_in}"
                        )
            elif holder != node.id:
                self._fail(f"two leaders in term {core.term}: {holder} and {node.id}")
        c = min(core.commit, core.log.last_index)
        if c > node.checked_commit:
            committed = self.committed
            # Entries folded into a snapshot are gone from the log; the state check covers them.
            for i in range(max(node.checked_commit, core.log.offset) + 1, c + 1):
                if core.log.cached(i):
                    e = core.log.entry(i)
                else:
                    # Left the in-memory cache (durable and applied): compare what the disk holds
                    # (nothing if its compaction is on the way: the state check covers that).
                    stored = node.disk.entries(i, i + 1, 0)
                    if not stored:
                        continue
                    e = stored[0]
                seen = committed.get(i)
                if seen is None:
                    # The term in which commitment was first seen: at least the term in which
                    # the entry really became committed, so the completeness check stays sound.
                    committed[i] = (e, core.term)
                    self.last_committed = max(self.last_committed, i)
                elif seen[0] != e:
                    self._fail(f"committed entry {i} changed on {node.id}: was term {seen[0].term}, now term {e.term}")
            node.checked_commit = c
            # The latest configuration known committed (the core's configs are in index order).
            for idx, m in reversed(core.configs):
                if idx <= c:
                    if idx > self.config_index:
                        self.config, self.config_index = m, idx
                        w.log(
                            f"CONFIG committed at {idx}: voters {','.join(m.voters)} learners "
                            f"{','.join(i for i in m.ids if i not in m.voters) or '-'}"
                        )
                    break

    def check_vote(self, voter: str, term: int, candidate: str) -> None:
        """One vote per term per node (a candidate's own vote included): what the durable vote
        in the hard state exists to guarantee, across crashes."""
        node = self.w.by_id.get(voter)
        gen = node.disk_gen if node is not None else 0
        holder = self.votes.setdefault((voter, gen, term), candidate)
        if holder != candidate:
            self._fail(f"{voter} voted twice in term {term}: for {holder} and for {candidate}")

    def check_durable_majority(self, crashed: SimNode) -> None:
        """After a crash: the last committed entry (hence, by log matching, every committed
        entry) is still held by a majority of nodes -- a committed entry never disappears."""
        if not self.committed:
            return
        nodes = self.w.nodes
        last = self.committed[self.last_committed][0]
        held: dict[str, bool] = {}
        for n in nodes:
            st = n.disk.live
            if st.snapshot_index >= last.index:
                held[n.id] = True  # folded into a snapshot of applied (hence committed) state
                continue
            k = last.index - st.snapshot_index - 1
            held[n.id] = len(st.log) > k and st.log[k] == last
        # It was committed by a majority of the configuration in force then: the committed one,
        # or a newer one (at most one change ahead) that some disk holds. Holding a majority of
        # any of them is what keeps it from being lost.
        configs = [self.config] if self.config.voters else []
        for n in nodes:
            on_disk = _disk_config(n)
            if on_disk is not None and on_disk[0] > self.config_index and on_disk[1].voters:
                configs.append(on_disk[1])
        if not configs:
            configs = [Membership()]
        best = (0, 1)
        for m in configs:
            voters = m.voters or tuple(n.id for n in nodes[: self.w.params.nodes])
            holders = sum(1 for v in voters if held.get(v))
            if holders * 2 > len(voters):
                return
            best = max(best, (holders, len(voters)))
        self._fail(
            f"committed entry {last.index} (term {last.term}) disappeared: after {crashed.id} crashed "
            f"only {best[0]} of {best[1]} voters hold it"
        )

    def check_applied(self, node: SimNode, entries: Sequence[Entry], storage: StateLike) -> None:
        committed = self.committed
        for e in entries:
            seen = committed.get(e.index)
            if seen is not None and seen[0] != e:
                self._fail(f"{node.id} applied entry {e.index} (term {e.term}) that differs from the committed one")
        self.check_state(node, storage)

    def check_state(self, node: SimNode, storage: StateLike) -> None:
        fp = fingerprint(storage)
        seen = self.states.setdefault(storage.applied_index, fp)
        if seen != fp:
            self._fail(f"{node.id}: different key-value state at applied index {storage.applied_index}")


def _disk_config(node: SimNode) -> tuple[int, Membership] | None:
    """The latest configuration on a node's disk (its log, else its snapshot), with its index."""
    st = node.disk.live
    for e in reversed(st.log):
        if e.kind == EntryKind.CONFIG:
            return e.index, Membership.decode(e.data)
    if st.snapshot_membership:
        return st.snapshot_index, Membership.decode(st.snapshot_membership)
    return None
