"""Operating errors: typed, expected, and mapped to HTTP in one place (``api/errors.py``).

Broken invariants are not here: they raise ``InvariantViolation`` and stop the node.
Pure module: the core, the driver, the runtime and the API all share these types.
"""

from __future__ import annotations

from typing import Any


class BeaverVaultError(Exception):
    """Base of every operating error. ``outcome`` says whether the operation took effect."""

    outcome = "not_applied"  # "not_applied": certainly did not happen; "unknown": may have


class NotLeader(BeaverVaultError):
    def __init__(self, leader_id: str | None, leader_http: str | None = None) -> None:
        super().__init__(f"not the leader (leader: {leader_id or 'unknown'})")
        self.leader_id = leader_id
        self.leader_http = leader_http


class NoLeader(BeaverVaultError):
    def __init__(self, detail: str = "no leader is known") -> None:
        super().__init__(detail)


class Overloaded(BeaverVaultError):
    def __init__(self, detail: str = "too many requests in flight") -> None:
        super().__init__(detail)


class Rejected(BeaverVaultError):
    """Refused: the operation certainly did not take effect (bad input, a conflict, ...).

    The Raft core and the driver raise the typed subclasses below, which carry the facts
    (ids, addresses, counts) and no HTTP; ``api/errors.py`` maps each type to a status. A bare
    ``Rejected`` with an explicit ``status`` is for the API layer's own refusals (input
    validation, a state machine's refusal); ``tests/test_layering.py`` keeps ``status=`` out of
    ``raft/`` and ``node/``.
    """

    def __init__(self, detail: str, status: int | None = None) -> None:
        super().__init__(detail)
        self.status = status


# ------------------------------------------------------------------ membership changes


class ConfigBusy(Rejected):
    """Another membership change (a promotion, a join handshake, a leadership transfer) is
    in flight, or the new leader has not committed its first entry yet: retry shortly."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)


class TooManyVoterChanges(Rejected):
    """A configuration that adds or removes more than one voter at once."""

    def __init__(self) -> None:
        super().__init__("only one voter may be added or removed at a time")


class IncompleteJoin(Rejected):
    """A join that names no node id or no raft address."""

    def __init__(self) -> None:
        super().__init__("NodeID and RaftAddress are required")


class AddressInUse(Rejected):
    def __init__(self, raft_address: str, member_id: str) -> None:
        super().__init__(f"raft address {raft_address} already belongs to member {member_id}")
        self.raft_address = raft_address
        self.member_id = member_id


class AddressUpdateNotRequested(Rejected):
    """A join named an existing member with a different raft address without asking for an
    address update: re-pointing a member is never a side effect of a join."""

    def __init__(self, node_id: str, current: str, requested: str) -> None:
        super().__init__(
            f"{node_id} is already a member at raft address {current}; to re-point it to {requested} "
            'send "UpdateAddress": true'
        )
        self.node_id = node_id
        self.current = current
        self.requested = requested


class NotAMember(Rejected):
    def __init__(self, node_id: str) -> None:
        super().__init__(f"{node_id} is not a member")
        self.node_id = node_id


class LastVoter(Rejected):
    def __init__(self, node_id: str) -> None:
        super().__init__("cannot remove the last voter")
        self.node_id = node_id


class NoReachableQuorum(Rejected):
    """Removing ``node_id`` would leave fewer reachable voters than a quorum (unless forced)."""

    def __init__(self, node_id: str, reachable: int, voters: int) -> None:
        super().__init__(
            f"removing {node_id} would leave {reachable} reachable voter(s) of {voters}: "
            "no quorum; send Force: true to remove it anyway"
        )
        self.node_id = node_id
        self.reachable = reachable
        self.voters = voters


class JoinRefused(Rejected):
    """The joining node answered the handshake with a refusal."""

    def __init__(self, node_id: str, reason: str, *, detail: str | None = None) -> None:
        super().__init__(detail if detail is not None else f"{node_id} refused to join: {reason}")
        self.node_id = node_id
        self.reason = reason


class IdentityMismatch(JoinRefused):
    """The node at the given raft address has another id than the one asked to join."""

    def __init__(self, node_id: str, raft_address: str, actual_id: str) -> None:
        super().__init__(
            node_id, "another node id", detail=f"the node at {raft_address} says it is {actual_id!r}"
        )
        self.raft_address = raft_address
        self.actual_id = actual_id


class RetiredNodeId(JoinRefused):
    """A removed id asked to rejoin with a fresh data directory (it forgot the votes it cast)."""

    def __init__(self, node_id: str) -> None:
        super().__init__(
            node_id,
            "retired id with a fresh data directory",
            detail=f"{node_id} was removed from this cluster before and now has a fresh data directory: "
            "it cannot rejoin under the same id (out-of-date members may still count the votes "
            "it has forgotten); join it under a new node id",
        )


class ForeignClusterData(JoinRefused):
    """The joining node holds data of another cluster (only a fresh data directory can join)."""

    def __init__(self, node_id: str, cluster_id: str) -> None:
        super().__init__(
            node_id,
            "holds data of another cluster",
            detail=f"{node_id} holds data of another cluster ({cluster_id}); "
            "only a node with a fresh data directory can join",
        )
        self.cluster_id = cluster_id


# ------------------------------------------------------------------ leadership transfer


class NotAVoter(Rejected):
    """Leadership can only be handed to a voting member."""

    def __init__(self, node_id: str) -> None:
        super().__init__(f"{node_id} is not a voting member")
        self.node_id = node_id


class NoTransferTarget(Rejected):
    def __init__(self) -> None:
        super().__init__("there is no other voter to hand leadership to")


class TransferTimedOut(Rejected):
    """The target did not take over within an election timeout; this node still leads."""

    def __init__(self, target: str) -> None:
        super().__init__(f"{target} did not take over within an election timeout")
        self.target = target


class OtherLeaderElected(Rejected):
    """During a transfer another node than the target became leader."""

    def __init__(self, target: str, leader_id: str) -> None:
        super().__init__(f"{leader_id} became leader instead of {target}")
        self.target = target
        self.leader_id = leader_id


# ------------------------------------------------------------------ proposals and watches


class SupersededByLeader(Rejected):
    """Another leader's entry was applied at the proposal's index: it never took effect."""

    def __init__(self, index: int, term: int, *, config: bool = False) -> None:
        super().__init__(
            "membership change superseded by another leader"
            if config
            else "superseded by another leader's entry; it was not applied"
        )
        self.index = index
        self.term = term
        self.config = config


class HistoryCompacted(Rejected):
    """A watch asked for revisions older than the history this node keeps."""

    def __init__(self, detail: str, requested: int, first_available: int) -> None:
        super().__init__(detail)
        self.requested = requested
        self.first_available = first_available


class ChangeInFlight(BeaverVaultError):
    """Another membership change is in flight (one at a time): ``change`` describes it (kind,
    node_id, phase, age_ms, and ``started_at_ms`` on the wall clock once the runtime adds it)."""

    def __init__(self, detail: str, change: dict[str, Any]) -> None:
        super().__init__(detail)
        self.change = change


class QuorumAtRisk(BeaverVaultError):
    """The what-if analysis says the change would leave no reachable quorum (during or after
    it), or that it cannot succeed (an unreachable transfer target): refused unless forced.
    ``analysis`` is the analysis (``raft.whatif.WhatIf.to_json``)."""

    def __init__(self, detail: str, analysis: dict[str, Any]) -> None:
        super().__init__(detail)
        self.analysis = analysis


class ChangeRolledBack(BeaverVaultError):
    """A membership change was undone: a learner that did not catch up within its deadline was
    removed again, or a join whose node never answered the handshake was dropped."""

    def __init__(self, detail: str, node_id: str) -> None:
        super().__init__(detail)
        self.node_id = node_id


class Unknown(BeaverVaultError):
    """Timeout, lost leadership or a dropped connection: it may or may not have happened."""

    outcome = "unknown"

    def __init__(self, detail: str = "outcome unknown") -> None:
        super().__init__(detail)


# ------------------------------------------------------------------ the node's own disk


class StorageFailure(BeaverVaultError):
    """The storage could not write: ``reason`` is ``"disk_full"`` (no space left) or
    ``"io_error"``. Raised by the storage layer (``storage/disk_errors.py``) in place of the
    driver-specific exception; the failed transaction was rolled back. ``maybe_written``: the
    failure came while committing (an fsync that failed), so the data may be on disk anyway."""

    def __init__(self, reason: str, detail: str, *, maybe_written: bool = False) -> None:
        super().__init__(detail)
        self.reason = reason
        self.maybe_written = maybe_written
        self.outcome = "unknown" if maybe_written else "not_applied"


class WritesSuspended(BeaverVaultError):
    """This node cannot write to its disk (``node/disk_guard.py``): it refuses writes until a
    retry succeeds. ``outcome`` is ``not_applied`` for a write refused at the door or certainly
    not appended, ``unknown`` for one that may be in a log (sent to followers before the local
    append failed, or an fsync that failed). ``reason``: ``disk_full`` | ``io_error``."""

    def __init__(self, detail: str, reason: str, outcome: str = "not_applied") -> None:
        super().__init__(detail)
        self.reason = reason
        self.outcome = outcome


class InvariantViolation(RuntimeError):
    """A broken invariant. Never caught by request handlers: it stops the node."""
