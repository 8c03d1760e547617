"""Planted bugs that live in driver code, kept on the simulator's side.

``--bug stale-read`` runs this subclass of the production ``NodeDriver`` instead of the driver
itself: production code has no branch that could reach it. (The other planted bugs are the
simulated disk's and client's: ``disk.SimDisk`` and ``workload``.)
"""

from __future__ import annotations

from beaver_vault.node.driver import NodeDriver, Waiter
from beaver_vault.raft.messages import RaftMessage


class LeaderLocalReads(NodeDriver):
    """stale-read: a "linearizable" read answered at once from local state, with no ReadIndex
    round (no quorum confirms this node still leads, a follower does not ask the leader)."""

    def read(self) -> Waiter:
        w = self._admit_read()
        w._finish(self.applied_index)
        return w


class AckBeforeDurable(NodeDriver):
    """ack-before-durable: the asynchronous path's classic mistake -- messages leave when their
    writes are handed to the storage worker, not when the worker reports them durable (a
    follower acknowledges entries, a voter grants a vote, that a crash then loses)."""

    def send_after_save(self, msgs: list[RaftMessage]) -> None:
        for m in msgs:
            self.transport.send(m)


def driver_class(bug: str | None) -> type[NodeDriver]:
    """The driver the world runs for the planted ``bug`` (the production one for the others)."""
    if bug == "stale-read":
        return LeaderLocalReads
    if bug == "ack-before-durable":
        return AckBeforeDurable
    return NodeDriver
