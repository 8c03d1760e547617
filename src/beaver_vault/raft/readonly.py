"""Read-only requests (ReadIndex, Raft thesis 6.4): linearizable reads without a log entry.

A leader stamps each read with its commit index and a heartbeat round (``seq``); the read is
confirmed once a quorum of voters echoed that round (or a later one), which proves the node
was still leader when the read arrived, so the commit index it recorded covers every write
acknowledged before. A new leader does not know its commit index until an entry of its own
term commits: reads wait for that (``waiting``). A follower forwards the read to the leader
(``ReadIndexRequest``) and remembers it in ``forwarded`` until answered. A follower's reads
that arrive together share ONE request: they wait in ``unsent`` until the next Ready, which
asks the leader once for all of them (``take_unsent``: the batch is named by its first ctx),
and the one answer releases them all. That is safe for every read of the batch: the leader
stamps the batch's read index after each of them was asked.

This module keeps the bookkeeping; the core decides when to call it and sends the messages.
Everything is bounded by ``limit`` reads in flight.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from beaver_vault.raft import quorum
from beaver_vault.raft.messages import NodeId, ReadState
from beaver_vault.raft.progress import Progress


@dataclass(slots=True)
class PendingRead:
    ctx: int
    index: int
    seq: int
    origin: NodeId  # this node, or the follower that asked (answered with ReadIndexResponse)


class ReadOnly:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.seq = 0  # the latest heartbeat round a read was stamped with
        self.pending: list[PendingRead] = []  # leader: stamped, waiting for a quorum's echo
        self.waiting: list[int] = []  # leader: local ctxs waiting for this term's first commit
        self.waiting_remote: list[tuple[NodeId, int]] = []  # the same, asked by followers
        self.forwarded: set[int] = set()  # follower: ctxs asked of the leader
        self.unsent: list[int] = []  # follower: ctxs to ask of the leader in the next Ready
        self.batches: dict[int, list[int]] = {}  # follower: a request's ctx -> the ctxs it answers
        # Outputs for the next Ready.
        self.states: list[ReadState] = []
        self.dropped: list[int] = []

    def in_flight(self) -> int:
        return len(self.pending) + len(self.waiting) + len(self.waiting_remote) + len(self.forwarded) + len(self.unsent)

    def full(self) -> bool:
        return self.in_flight() >= self.limit

    def drop_all(self, self_id: NodeId) -> None:
        """Leadership (or the leader) was lost: every read of ours fails; followers' reads are
        forgotten (they time out on their side)."""
        self.dropped.extend(r.ctx for r in self.pending if r.origin == self_id)
        self.dropped.extend(self.waiting)
        self.dropped.extend(sorted(self.forwarded))
        self.dropped.extend(self.unsent)
        self.pending = []
        self.waiting = []
        self.waiting_remote = []
        self.forwarded = set()
        self.unsent = []
        self.batches = {}

    def take_unsent(self) -> int | None:
        """Follower: the ctx of one request asking the leader for every unsent read (None: none)."""
        if not self.unsent:
            return None
        batch, self.unsent = self.unsent, []
        self.batches[batch[0]] = batch
        self.forwarded.update(batch)
        return batch[0]

    def answered(self, ctx: int, ok: bool, index: int) -> None:
        """Follower: the leader answered a forwarded batch of reads (ignored unless we asked)."""
        batch = self.batches.pop(ctx, None)
        if batch is None:
            return
        for c in batch:
            if c not in self.forwarded:
                continue
            self.forwarded.discard(c)
            if ok:
                self.states.append(ReadState(c, index))
            else:
                self.dropped.append(c)

    def take_waiting(self) -> list[tuple[int, NodeId | None]]:
        """The reads that waited for the term's first commit: (ctx, origin or None if ours)."""
        out: list[tuple[int, NodeId | None]] = [(ctx, None) for ctx in self.waiting]
        out.extend((ctx, origin) for origin, ctx in self.waiting_remote)
        self.waiting = []
        self.waiting_remote = []
        return out

    def stamp(self, ctx: int, index: int, origin: NodeId) -> int:
        """Stamp a read with the commit ``index`` and a new heartbeat round; returns the round."""
        self.seq += 1
        self.pending.append(PendingRead(ctx, index, self.seq, origin))
        return self.seq

    def confirm(self, self_id: NodeId, voters: Iterable[NodeId], progress: Mapping[NodeId, Progress]) -> list[PendingRead]:
        """Release the reads whose round a quorum of ``voters`` echoed: ours become read
        states; the followers' ones are returned (in order) for the core to answer."""
        if not self.pending:
            return []
        acks = sorted((progress[v].read_ack if v in progress else 0 for v in voters), reverse=True)
        if not acks:
            return []
        confirmed_seq = acks[quorum.majority(len(acks)) - 1]
        # ``pending`` is in stamping order, so by increasing round: the confirmed reads are a
        # prefix (usually empty when a read was just stamped, and found at once).
        k = 0
        for r in self.pending:
            if r.seq > confirmed_seq:
                break
            k += 1
        if not k:
            return []
        released, self.pending = self.pending[:k], self.pending[k:]
        remote: list[PendingRead] = []
        for r in released:
            if r.origin == self_id:
                self.states.append(ReadState(r.ctx, r.index))
            else:
                remote.append(r)
        return remote
