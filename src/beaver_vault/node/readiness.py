"""What ``GET /ready`` needs to know about replication, answered locally (pure, no I/O).

Theory of operation: a node is caught up when it has applied what the leader had committed
the last time the leader spoke to it. A follower learns the leader's commit index from every
``AppendRequest`` (heartbeats included); no round trip to the leader is made to answer
``/ready``. Within one term the leader's commit index only grows, but what a message carries
may be less: a heartbeat carries ``min(commit, match)`` (the follower must not commit past
what it holds), so a far-behind follower hears only its own position from heartbeats. The
target is therefore the HIGHEST value announced in the current leader's term, and a snapshot
being streamed (``InstallSnapshot.index``, committed on the leader) counts too: a follower
waiting for a snapshot is not caught up. The runtime calls :meth:`ReadinessTracker.saw` for each inbound message (before
the core steps it) and :meth:`ReadinessTracker.processed` after each ``driver.process()``.
Only the announcements that were processed count: between the arrival of a message and its
processing, the applied index lags the announcement by design, and ``/ready`` must not flap
under a steady write load. After ``process()`` the node has applied everything it holds up
to the announced commit index, so ``applied < leader_commit`` then means its log is really
behind (catching up, waiting for a snapshot, cut off from entries it needs).

On the leader the target is its own commit index as of the last ``process()``.
"""

from __future__ import annotations

from dataclasses import dataclass

from beaver_vault.raft.messages import AppendRequest, InstallSnapshot, Message

LEADER_ROLE = "leader"


@dataclass(frozen=True, slots=True)
class CatchUp:
    """The replication part of readiness: the commit index to reach and whether it is reached."""

    leader_commit_index: int  # 0: never heard from a leader (nor led)
    applied_index: int

    @property
    def caught_up(self) -> bool:
        return self.leader_commit_index > 0 and self.applied_index >= self.leader_commit_index


class ReadinessTracker:
    """The highest commit index the current leader announced to this node."""

    __slots__ = ("_announced", "_announced_term", "_pending", "_pending_term")

    def __init__(self) -> None:
        self._pending = 0
        self._pending_term = 0
        self._announced = 0
        self._announced_term = 0

    def saw(self, msg: Message) -> None:
        """Every inbound message, before the core steps it (appends and snapshots count)."""
        match msg:
            case AppendRequest():
                self._announce(msg.term, msg.commit)
            case InstallSnapshot():
                self._announce(msg.term, msg.index)
            case _:
                pass

    def _announce(self, term: int, commit: int) -> None:
        if term > self._pending_term:
            # A new leader starts afresh (it may know less than its predecessor announced
            # until it commits an entry of its own term).
            self._pending_term, self._pending = term, commit
        elif term == self._pending_term:
            self._pending = max(self._pending, commit)

    def processed(self, role: str, commit_index: int, term: int) -> None:
        """After ``driver.process()``: what arrived before it now counts."""
        if role == LEADER_ROLE:
            self._announced, self._announced_term = commit_index, term
        elif self._pending_term >= self._announced_term:
            self._announced, self._announced_term = self._pending, self._pending_term

    def catch_up(self, applied_index: int) -> CatchUp:
        return CatchUp(self._announced, applied_index)
