"""What ``RaftCore.status()`` reports: frozen values for the node's status, the UI and the
simulator's trace (never the core's live objects)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from beaver_vault.raft.messages import Membership, NodeId
from beaver_vault.raft.progress import Progress


@dataclass(frozen=True, slots=True)
class PeerStatus:
    id: NodeId
    match: int
    next: int
    state: str
    inflight: int
    recent_active: bool


@dataclass(frozen=True, slots=True)
class RaftStatus:
    id: NodeId
    role: str
    term: int
    vote: NodeId | None
    leader_id: NodeId | None
    commit: int
    applied: int
    last_index: int
    first_index: int
    membership: Membership
    membership_index: int
    peers: tuple[PeerStatus, ...]


def peer_statuses(progress: Mapping[NodeId, Progress]) -> tuple[PeerStatus, ...]:
    """One line per tracked follower (the leader's own entry included), sorted by id."""
    return tuple(
        PeerStatus(pid, pr.match, pr.next, pr.state, len(pr.inflight), pr.recent_active)
        for pid, pr in sorted(progress.items())
    )
