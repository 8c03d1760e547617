"""Values that cross the Raft core's boundary: log entries, hard state, membership, messages.

Every message kind is one frozen, slotted dataclass; the core dispatches on them with
``match``. Encoding to bytes lives only in ``beaver_vault.transport.codec``.

Two families travel on the raft port:

* Raft messages (``RaftMessage``): stepped into ``RaftCore``. They carry ``term``.
* Handshake messages (``HandshakeMessage``): used by the node driver when a node joins
  (probe a candidate node, then adopt it into the cluster). They are not cluster-bound:
  the transport lets them through whatever the frame's cluster id.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import IntEnum

NodeId = str


class EntryKind(IntEnum):
    NORMAL = 0  # a client command for the state machine (opaque bytes)
    NOOP = 1  # appended by every new leader; commits the entries of earlier terms
    CONFIG = 2  # a membership configuration (Membership.encode()); takes effect when appended


@dataclass(frozen=True, slots=True)
class Entry:
    term: int
    index: int
    kind: EntryKind = EntryKind.NORMAL
    data: bytes = b""

    def size_bytes(self) -> int:
        return len(self.data) + 24


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a vote is granted or a message depending on it leaves."""

    term: int = 0
    vote: NodeId | None = None
    commit: int = 0


@dataclass(frozen=True, slots=True)
class Member:
    id: NodeId
    raft_address: str
    http_address: str = ""
    voter: bool = True


@dataclass(frozen=True, slots=True)
class Membership:
    """A cluster configuration. Members are kept sorted by id so iteration is deterministic."""

    members: tuple[Member, ...] = ()
    # Ids removed from the cluster, carried forward in every later configuration. A removed id
    # may rejoin only with its old data: with a fresh disk it would have forgotten the votes
    # it cast, which out-of-date members (whose configuration still counts it) may rely on.
    retired: tuple[NodeId, ...] = ()

    def __post_init__(self) -> None:
        ids = [m.id for m in self.members]
        if ids != sorted(ids) or len(set(ids)) != len(ids):
            object.__setattr__(self, "members", tuple(sorted({m.id: m for m in self.members}.values(), key=lambda m: m.id)))
        if list(self.retired) != sorted(set(self.retired)):
            object.__setattr__(self, "retired", tuple(sorted(set(self.retired))))

    @property
    def ids(self) -> tuple[NodeId, ...]:
        return tuple(m.id for m in self.members)

    @property
    def voters(self) -> tuple[NodeId, ...]:
        return tuple(m.id for m in self.members if m.voter)

    def get(self, node_id: NodeId) -> Member | None:
        for m in self.members:
            if m.id == node_id:
                return m
        return None

    def with_member(self, member: Member) -> Membership:
        return Membership(tuple(m for m in self.members if m.id != member.id) + (member,), self.retired)

    def without(self, node_id: NodeId) -> Membership:
        retired = self.retired if node_id in self.retired else tuple(sorted((*self.retired, node_id)))
        return Membership(tuple(m for m in self.members if m.id != node_id), retired)

    def encode(self) -> bytes:
        rows = [[m.id, m.raft_address, m.http_address, m.voter] for m in self.members]
        if not self.retired:
            return json.dumps(rows, separators=(",", ":")).encode()
        return json.dumps({"members": rows, "retired": list(self.retired)}, separators=(",", ":")).encode()

    @staticmethod
    def decode(data: bytes) -> Membership:
        obj = json.loads(data)
        rows, retired = (obj["members"], obj["retired"]) if isinstance(obj, dict) else (obj, [])
        return Membership(
            tuple(Member(str(r[0]), str(r[1]), str(r[2]), bool(r[3])) for r in rows),
            tuple(str(r) for r in retired),
        )


# --------------------------------------------------------------------------- Raft messages


@dataclass(frozen=True, slots=True)
class VoteRequest:
    term: int  # for a pre-vote: the term the candidate WOULD campaign in (its own is unchanged)
    src: NodeId
    dst: NodeId
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False  # leadership transfer: ignore leader stickiness / check-quorum lease


@dataclass(frozen=True, slots=True)
class VoteResponse:
    term: int
    src: NodeId
    dst: NodeId
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendRequest:
    term: int
    src: NodeId
    dst: NodeId
    prev_index: int
    prev_term: int
    entries: tuple[Entry, ...]
    commit: int
    read_seq: int = 0  # leader's heartbeat round; echoed back to confirm leadership for reads


@dataclass(frozen=True, slots=True)
class AppendResponse:
    term: int
    src: NodeId
    dst: NodeId
    success: bool
    match_index: int  # on success: last index known to match; on reject: the rejected prev_index
    hint_index: int = 0  # on reject: follower's suggestion for the next prev_index to try
    hint_term: int = 0  # on reject: term of the follower's entry at hint_index (0 if none)
    read_seq: int = 0


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the leader asks an up-to-date follower to campaign at once."""

    term: int
    src: NodeId
    dst: NodeId


@dataclass(frozen=True, slots=True)
class ReadIndexRequest:
    """Follower -> leader: confirm your leadership and tell me the commit index to read at."""

    term: int
    src: NodeId
    dst: NodeId
    ctx: int


@dataclass(frozen=True, slots=True)
class ReadIndexResponse:
    term: int
    src: NodeId
    dst: NodeId
    ctx: int
    index: int
    ok: bool


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """Leader -> follower: one chunk of a snapshot of the state machine at ``index``.

    Chunks are numbered from 0 and acknowledged one by one (``SnapshotAck``); the last one
    has ``done`` set and carries the configuration at ``index``."""

    term: int
    src: NodeId
    dst: NodeId
    index: int
    snap_term: int
    seq: int
    data: bytes
    done: bool
    membership: bytes = b""


@dataclass(frozen=True, slots=True)
class SnapshotAck:
    term: int
    src: NodeId
    dst: NodeId
    index: int
    seq: int
    ok: bool


RaftMessage = (
    VoteRequest
    | VoteResponse
    | AppendRequest
    | AppendResponse
    | TimeoutNow
    | ReadIndexRequest
    | ReadIndexResponse
    | InstallSnapshot
    | SnapshotAck
)


# --------------------------------------------------------------------------- join handshake


@dataclass(frozen=True, slots=True)
class ProbeRequest:
    """Leader -> candidate node: who are you, and may you be adopted?"""

    src: NodeId
    dst: NodeId
    nonce: int
    reply_address: str = ""  # the prober's raft address: the probed node may not know it yet


@dataclass(frozen=True, slots=True)
class ProbeResponse:
    src: NodeId
    dst: NodeId
    nonce: int
    node_id: NodeId
    cluster_id: str
    http_address: str
    pristine: bool


@dataclass(frozen=True, slots=True)
class AdoptRequest:
    """Leader -> pristine node: wipe your state and take this cluster id (fsynced) first."""

    src: NodeId
    dst: NodeId
    nonce: int
    cluster_id: str
    members: bytes = b""  # Membership.encode() of the cluster, so the node can answer the leader


@dataclass(frozen=True, slots=True)
class AdoptResponse:
    src: NodeId
    dst: NodeId
    nonce: int
    ok: bool
    reason: str = ""


HandshakeMessage = ProbeRequest | ProbeResponse | AdoptRequest | AdoptResponse
Message = RaftMessage | HandshakeMessage

RAFT_MESSAGE_TYPES: tuple[type, ...] = (
    VoteRequest,
    VoteResponse,
    AppendRequest,
    AppendResponse,
    TimeoutNow,
    ReadIndexRequest,
    ReadIndexResponse,
    InstallSnapshot,
    SnapshotAck,
)
HANDSHAKE_MESSAGE_TYPES: tuple[type, ...] = (ProbeRequest, ProbeResponse, AdoptRequest, AdoptResponse)


def is_handshake(msg: Message) -> bool:
    return isinstance(msg, HANDSHAKE_MESSAGE_TYPES)


@dataclass(frozen=True, slots=True)
class ReadState:
    """A confirmed read index: reads issued with ``ctx`` may be served once applied >= index."""

    ctx: int
    index: int
