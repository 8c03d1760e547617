"""What-if analysis of one membership change: pure quorum arithmetic, no I/O.

Theory of operation: the leader knows its configuration, which voters answered recently
(``reachable``) and how much data a new node would have to receive. From that alone this module
says what a change would do, before anything is proposed: the voters after it, the quorum sizes,
and whether a reachable quorum is kept *during* the change (every configuration the cluster
passes through can still commit) and *after* it. The real change uses the same answer: one the
analysis says would lose the quorum is refused unless forced, and ``?dry_run=true`` returns it.

The configurations passed through (single-server changes, each effective once appended):

* join: the node is added as a learner (voters unchanged), catches up, then is promoted. The
  promotion commits on the new voters, the new node counted as reachable (it is promoted only
  once it answers and has caught up).
* remove: one configuration without the node; it commits on the remaining voters (removing a
  voter can therefore restore a lost quorum; removing the last voter is impossible).
* transfer: no configuration change; the target must be a reachable voter, and winning the
  election needs a reachable quorum of the voters.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from beaver_vault.raft.quorum import majority

JOIN, REMOVE, TRANSFER = "join", "remove", "transfer"
KINDS = (JOIN, REMOVE, TRANSFER)


@dataclass(frozen=True, slots=True)
class ClusterView:
    """What the leader knows now. ``reachable``: members heard from within an election timeout
    (the leader itself included)."""

    leader_id: str
    voters: tuple[str, ...]
    learners: tuple[str, ...] = ()
    reachable: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class WhatIf:
    kind: str
    node_id: str | None
    voters_before: tuple[str, ...]
    voters_after: tuple[str, ...]
    learners_after: tuple[str, ...]
    quorum_before: int
    quorum_after: int
    reachable_voters: tuple[str, ...]  # current voters reachable now
    unreachable_voters: tuple[str, ...]
    quorum_now: bool  # the current voters have a reachable quorum
    quorum_during: bool  # every configuration on the way can commit with reachable voters
    quorum_after_ok: bool  # the final configuration has a reachable quorum
    leader_after: str | None  # None: chosen by an election among voters_after
    bytes_to_send: int  # data the new node must receive (join), else 0
    possible: bool  # False: refused whatever Force says (``problem`` says why)
    problem: str | None

    @property
    def keeps_quorum(self) -> bool:
        return self.quorum_during and self.quorum_after_ok

    @property
    def allowed(self) -> bool:
        """Would the real change be accepted without ``Force``?"""
        return self.possible and self.keeps_quorum

    def refusal(self) -> str | None:
        """Why the real change would be refused without Force (None: it would not be)."""
        if not self.possible:
            return self.problem
        if self.keeps_quorum:
            return None
        what = f"{self.kind} {self.node_id}" if self.node_id else self.kind
        reach = len(self.reachable_voters)
        if not self.quorum_now:
            detail = (
                f"only {reach} of {len(self.voters_before)} voters are reachable "
                f"(quorum {self.quorum_before}): the cluster has no reachable quorum now"
            )
        elif self.kind == TRANSFER:
            detail = f"the target {self.node_id} is not reachable: it could not win an election"
        else:
            after = len(_reachable_after(self))
            detail = (
                f"{after} of {len(self.voters_after)} voters would be reachable after it "
                f"(quorum {self.quorum_after}): no quorum"
            )
        return f"{what} would lose the quorum: {detail}; send Force: true to do it anyway"

    def to_json(self) -> dict[str, Any]:
        return {
            "change": {"kind": self.kind, "node_id": self.node_id},
            "voters_before": list(self.voters_before),
            "voters_after": list(self.voters_after),
            "learners_after": list(self.learners_after),
            "quorum_before": self.quorum_before,
            "quorum_after": self.quorum_after,
            "reachable_voters": list(self.reachable_voters),
            "unreachable_voters": list(self.unreachable_voters),
            "quorum_now": self.quorum_now,
            "quorum_during": self.quorum_during,
            "quorum_after_kept": self.quorum_after_ok,
            "leader_after": self.leader_after,
            "bytes_to_send": self.bytes_to_send,
            "possible": self.possible,
            "allowed": self.allowed,
            "refusal": self.refusal(),
        }


def _reachable_after(w: WhatIf) -> list[str]:
    reach = set(w.reachable_voters)
    if w.kind == JOIN and w.node_id is not None:
        reach.add(w.node_id)  # promoted only once caught up and answering
    return [v for v in w.voters_after if v in reach]


def _count(voters: Iterable[str], reachable: frozenset[str] | set[str]) -> int:
    return sum(1 for v in voters if v in reachable)


def analyse(
    view: ClusterView,
    kind: str,
    node_id: str | None,
    *,
    bytes_to_send: int = 0,
) -> WhatIf:
    """What ``kind`` (join/remove/transfer) of ``node_id`` would do to the cluster in ``view``.
    For a transfer, ``node_id`` None means the leader's default choice (pass the resolved
    target if known)."""
    if kind not in KINDS:
        raise ValueError(f"unknown change kind {kind!r}")
    voters = tuple(sorted(set(view.voters)))
    learners = tuple(sorted(set(view.learners) - set(voters)))
    reach = frozenset(view.reachable) | {view.leader_id}
    reachable_voters = tuple(v for v in voters if v in reach)
    unreachable = tuple(v for v in voters if v not in reach)
    q_before = majority(len(voters)) if voters else 0
    quorum_now = bool(voters) and len(reachable_voters) >= q_before
    possible, problem = True, None
    leader_after: str | None = view.leader_id
    after, learners_after = voters, learners
    during = after_ok = quorum_now
    if kind == JOIN:
        if node_id is None:
            raise ValueError("a join needs a node id")
        if node_id in voters:
            bytes_to_send = 0  # already a voter: at most an address update
        else:
            after = tuple(sorted((*voters, node_id)))
            learners_after = tuple(n for n in learners if n != node_id)
            reach_after = _count(after, reach | {node_id})
            after_ok = reach_after >= majority(len(after))
            during = quorum_now and after_ok
    elif kind == REMOVE:
        bytes_to_send = 0
        if node_id is None:
            raise ValueError("a removal needs a node id")
        if node_id not in voters and node_id not in learners:
            possible, problem = False, f"{node_id} is not a member"
        elif node_id in voters and len(voters) == 1:
            possible, problem = False, "cannot remove the last voter"
        else:
            after = tuple(v for v in voters if v != node_id)
            learners_after = tuple(n for n in learners if n != node_id)
            after_ok = _count(after, reach) >= majority(len(after))
            # The new configuration is used as soon as it is appended and commits on its own
            # voters: "during" is the same question as "after".
            during = after_ok
            if node_id == view.leader_id:
                leader_after = None  # handed to the most up-to-date voter of the rest
    else:  # TRANSFER
        bytes_to_send = 0
        others = [v for v in voters if v != view.leader_id]
        if node_id is None:
            candidates = [v for v in others if v in reach] or others
            node_id = candidates[0] if candidates else None
        if node_id is None:
            possible, problem = False, "there is no other voter to hand leadership to"
        elif node_id not in voters:
            possible, problem = False, f"{node_id} is not a voting member"
        else:
            leader_after = node_id
            during = quorum_now and node_id in reach
            after_ok = quorum_now
    return WhatIf(
        kind=kind,
        node_id=node_id,
        voters_before=voters,
        voters_after=after,
        learners_after=learners_after,
        quorum_before=q_before,
        quorum_after=majority(len(after)) if after else 0,
        reachable_voters=reachable_voters,
        unreachable_voters=unreachable,
        quorum_now=quorum_now,
        quorum_during=during,
        quorum_after_ok=after_ok,
        leader_after=leader_after,
        bytes_to_send=max(0, bytes_to_send),
        possible=possible,
        problem=problem,
    )


def catchup_deadline_ticks(bytes_to_send: int, *, base_ticks: int, bytes_per_tick: int) -> int:
    """How long a learner may take to catch up: a base, plus the time to receive its data at an
    assumed minimum rate (so a large catch-up is not cut short)."""
    return base_ticks + (max(0, bytes_to_send) + max(1, bytes_per_tick) - 1) // max(1, bytes_per_tick)
