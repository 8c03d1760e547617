"""Status snapshots (frozen) that feed ``/api/v1/status``, the UI and the simulator trace."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class MemberStatus:
    id: str
    raft_address: str
    http_address: str
    voter: bool


@dataclass(frozen=True, slots=True)
class NodeStatus:
    node_id: str
    role: str  # "leader" | "follower" | "candidate" | "pre-candidate" | "joining" (awaiting adoption)
    term: int
    leader_id: str | None
    commit_index: int
    applied_index: int
    last_log_index: int
    cluster_id: str | None
    members: tuple[MemberStatus, ...]
    http_address: str
    raft_address: str
    snapshot_index: int = 0  # the log was compacted up to here (0: never)
    log_first_index: int = 1  # first index still in the log
    storage_error: str | None = None  # why this node refuses writes (its disk failed); None: writable

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d["members"] = [asdict(m) for m in self.members]
        return d
