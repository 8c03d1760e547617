"""Membership changes belong to the cluster, not to the request that asked for one.

Theory of operation: the leader tracks at most ONE change in flight (:class:`Change`): a join
(handshake -> learner catching up -> promotion committed), a removal, a rollback or a leadership
transfer. Requests only *start* a change and wait for it; when the caller goes away (it
disconnected, its deadline passed: ``NodeDriver.abandon``) the change carries on or is undone,
on the tracker's own deadlines:

* a join whose node does not answer the handshake within ``change_timeout_ticks`` is dropped
  (nothing was committed, so nothing is undone); a caller that gives up during the handshake
  drops it at once (``NodeDriver.abandon`` clears the handshake);
* a learner that has not caught up within ``change_timeout_ticks`` plus the time to receive its
  data at ``catchup_bytes_per_tick`` is removed again (rolled back): the reason goes to the
  event hook (log, event journal), to ``recent_rollbacks`` (``GET /api/v1/raft/nodes``) and to a
  caller still waiting (``ChangeRolledBack``). The id is retired as by any removal: a learner
  promoted in an uncommitted configuration may have voted, so it may come back with its data
  but not under the same id with a fresh data directory;
* a removal, rollback or promotion is done once its configuration is committed; a transfer once
  leadership moved or the core gave up.

A join asked for again while that node is being joined (same id and address: a caller that
timed out and retries, a forwarded join whose follower gave up) is not refused: it gets its own
waiter (``wait_for_join``), answered like the first one once the node is a voter (or with the
rollback's reason). So a join is idempotent however long the node's catch-up takes.

Any other change asked for meanwhile is refused at once with :class:`ChangeInFlight` (what is
in flight, since when) instead of waiting; so is one the what-if analysis (``raft.whatif``)
says would leave no reachable quorum (:class:`QuorumAtRisk`), unless forced. A learner the
leader finds in its configuration without a change in flight (a previous leader added it) is
adopted and gets a fresh deadline, so no learner stays forever.

The tracker is part of the synchronous driver (the simulator runs it too): time is the
driver's ticks; ``tick_ms`` only converts ages for humans.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from beaver_vault.errors import (
    BeaverVaultError,
    ChangeInFlight,
    ChangeRolledBack,
    NotAMember,
    NotLeader,
    Overloaded,
    QuorumAtRisk,
    Unknown,
)
from beaver_vault.node.outcomes import Waiter
from beaver_vault.raft.whatif import JOIN, REMOVE, TRANSFER, ClusterView, WhatIf, analyse, catchup_deadline_ticks

if TYPE_CHECKING:
    from beaver_vault.node.driver import NodeDriver

LEADER = "leader"
ROLLBACKS_KEPT = 16
ENTRY_OVERHEAD_BYTES = 16  # index, term and kind of a log entry on the wire, roughly
REPEATED_JOINS_MAX = 64  # callers waiting on one node's join beside the first

EventHook = Callable[[str, dict[str, Any]], None]


@dataclass(slots=True)
class Change:
    kind: str  # join | remove | rollback | transfer
    node_id: str
    phase: str  # handshake | learner | promotion | commit | transfer
    started_tick: int
    deadline_tick: int
    waiter: Waiter | None = None  # the caller still waiting, if any
    bytes_to_send: int = 0
    adopted: bool = False  # a learner found without its join (a previous leader added it)


class ChangeTracker:
    def __init__(
        self,
        driver: NodeDriver,
        *,
        tick_ms: int,
        change_timeout_ticks: int,
        catchup_bytes_per_tick: int,
    ) -> None:
        self.d = driver
        self.tick_ms = tick_ms
        self.timeout_ticks = max(1, change_timeout_ticks)
        self.bytes_per_tick = max(1, catchup_bytes_per_tick)
        self.ticks = 0
        self.current: Change | None = None
        self.rollbacks: deque[dict[str, Any]] = deque(maxlen=ROLLBACKS_KEPT)
        self._rollback_ticks: deque[int] = deque(maxlen=ROLLBACKS_KEPT)
        self.on_event: EventHook | None = None
        self.join_waiters: dict[str, list[Waiter]] = {}  # repeated joins, by node, until it is a voter
        self.counters: dict[str, int] = {"changes": 0, "rollbacks": 0, "refused_in_flight": 0, "refused_quorum": 0}

    # ------------------------------------------------------------------ views

    def _ms(self, ticks: int) -> int:
        return max(0, ticks) * self.tick_ms

    def describe(self, c: Change | None = None) -> dict[str, Any] | None:
        c = c if c is not None else self.current
        if c is None:
            return None
        return {
            "kind": c.kind,
            "node_id": c.node_id,
            "phase": c.phase,
            "age_ms": self._ms(self.ticks - c.started_tick),
            "deadline_in_ms": self._ms(c.deadline_tick - self.ticks),
            "bytes_to_send": c.bytes_to_send,
            "caller_waiting": c.waiter is not None and not c.waiter.done,
        }

    def recent_rollbacks(self) -> list[dict[str, Any]]:
        """The last rollbacks, newest last, each with ``age_ms``."""
        return [
            {**r, "age_ms": self._ms(self.ticks - t)} for r, t in zip(self.rollbacks, self._rollback_ticks, strict=True)
        ]

    def _event(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event(kind, fields)

    # ------------------------------------------------------------------ admission

    def reachable(self, node_id: str) -> bool:
        """Heard from within an election timeout (the leader itself always): the same test as
        the ``reachable`` of ``GET /api/v1/raft/nodes``, so the two never disagree."""
        return self.d.members._reachable(node_id)

    def view(self) -> ClusterView:
        core = self.d.core
        m = core.membership
        reachable = frozenset(i for i in m.ids if self.reachable(i))
        return ClusterView(
            leader_id=self.d.id,
            voters=m.voters,
            learners=tuple(i for i in m.ids if i not in m.voters),
            reachable=reachable,
        )

    def bytes_to_send(self, node_id: str) -> int:
        """About how much a node must receive to catch up: from its match index (0 for a new
        node), the log entries after it, plus the state's size if the log was compacted past it."""
        core = self.d.core
        pr = core.progress.get(node_id)
        match = pr.match if pr is not None else 0
        log = core.log
        total = 0
        start = match + 1
        if match < log.offset:
            state_bytes = getattr(self.d.storage, "state_bytes", None)
            total += int(state_bytes()) if callable(state_bytes) else 0
            start = log.offset + 1
        # Entries may have left the in-memory cache: the log keeps every entry's size
        # (Entry.size_bytes(): the data plus 24).
        first = max(start, log.first_index)
        n = log.last_index - first + 1
        if n > 0:
            total += log.bytes_between(first, log.last_index) + n * (ENTRY_OVERHEAD_BYTES - 24)
        return total

    def analyse(self, kind: str, node_id: str | None) -> WhatIf:
        nbytes = self.bytes_to_send(node_id) if kind == JOIN and node_id is not None else 0
        return analyse(self.view(), kind, node_id, bytes_to_send=nbytes)

    def what_if(self, kind: str, node_id: str | None) -> dict[str, Any]:
        """The dry-run answer: the analysis, the change in flight (which would refuse this one)
        and the deadline a joining learner would get."""
        if self.d.core.role != LEADER:
            raise self.d.not_leader()
        if kind == REMOVE and node_id is not None and self.d.core.membership.get(node_id) is None:
            raise NotAMember(node_id)  # as the removal itself would answer (404)
        w = self.analyse(kind, node_id)
        out = w.to_json()
        in_flight = self.describe()
        if in_flight is not None and not self._may_replace(kind, node_id):
            out["allowed"] = False
            out["refusal"] = out["refusal"] or f"another membership change is in flight: {_said(in_flight)}"
        out["in_flight"] = in_flight
        if kind == JOIN:
            deadline = catchup_deadline_ticks(
                w.bytes_to_send, base_ticks=self.timeout_ticks, bytes_per_tick=self.bytes_per_tick
            )
            out["catchup_deadline_ms"] = self._ms(deadline)
        out["dry_run"] = True
        return out

    def _may_replace(self, kind: str, node_id: str | None) -> bool:
        """Removing the node whose join is in flight cancels that join (the operator's way out)."""
        c = self.current
        return c is not None and kind == REMOVE and c.kind == JOIN and c.node_id == node_id and c.phase == "learner"

    def admit(self, kind: str, node_id: str | None, *, force: bool) -> None:
        """Raise ``ChangeInFlight`` if another change is in flight, ``QuorumAtRisk`` if the
        what-if analysis says this one would lose the quorum (unless ``force``)."""
        c = self.current
        if c is not None and not self._may_replace(kind, node_id):
            self.counters["refused_in_flight"] += 1
            info = self.describe(c) or {}
            raise ChangeInFlight(f"another membership change is in flight: {_said(info)}; retry once it is done", info)
        w = self.analyse(kind, node_id)
        if not force and w.possible and not w.keeps_quorum:
            self.counters["refused_quorum"] += 1
            raise QuorumAtRisk(w.refusal() or "the change would lose the quorum", w.to_json())

    # ------------------------------------------------------------------ repeated joins

    def wait_for_join(self, node_id: str) -> Waiter:
        """A join of ``node_id`` asked for again while it is being joined: a waiter answered with
        the configuration once the node is a voter in a committed configuration, or with an
        error if the join ends otherwise (rolled back, refused, leadership lost)."""
        waiting = [w for w in self.join_waiters.get(node_id, []) if not w.done]
        if len(waiting) >= REPEATED_JOINS_MAX:
            raise Overloaded(f"too many callers already wait for the join of {node_id}")
        w = Waiter("config")
        waiting.append(w)
        self.join_waiters[node_id] = waiting
        self.counters["repeated_joins"] = self.counters.get("repeated_joins", 0) + 1
        return w

    def _settle_join_waiters(self) -> None:
        d = self.d
        core = d.core
        for nid in list(self.join_waiters):
            waiting = [w for w in self.join_waiters[nid] if not w.done]
            error: BeaverVaultError | None = None
            member = core.membership.get(nid)
            in_progress = (d.members.join_op is not None and d.members.join_op.node_id == nid) or (
                self.current is not None and self.current.kind == JOIN and self.current.node_id == nid
            )
            if core.role != LEADER:
                error = Unknown(f"leadership changed while {nid} was being joined; retry the join")
            elif member is not None and member.voter and core.membership_index <= core.commit:
                for w in waiting:
                    w._finish(core.membership)
                waiting = []
            elif member is None and not in_progress:
                last = self.rollbacks[-1]["reason"] if self.rollbacks and self.rollbacks[-1]["node_id"] == nid else None
                error = ChangeRolledBack(last or f"the join of {nid} did not complete; ask again", nid)
            if error is not None:
                for w in waiting:
                    w._finish(error=error)
                waiting = []
            if waiting:
                self.join_waiters[nid] = waiting
            else:
                del self.join_waiters[nid]

    # ------------------------------------------------------------------ lifecycle

    def begin(self, kind: str, node_id: str, waiter: Waiter, phase: str) -> None:
        old = self.current
        if old is not None and old.node_id == node_id:
            # A removal of the learner being joined: the join ends here.
            w = self.d.members.promotions.pop(node_id, None) or old.waiter
            if w is not None:
                w._finish(error=ChangeRolledBack(f"the join of {node_id} was cancelled by its removal", node_id))
            self._event("change_cancelled", change=self.describe(old), reason="removed on request")
        self.current = Change(kind, node_id, phase, self.ticks, self.ticks + self.timeout_ticks, waiter)
        self.counters["changes"] += 1
        self._event("change_started", change=self.describe())

    def _end(self, outcome: str, reason: str = "") -> None:
        c = self.current
        if c is None:
            return
        self.current = None
        self._event("change_" + outcome, change=self.describe(c), reason=reason)

    def tick(self) -> None:
        self.ticks += 1
        c = self.current
        if c is None or self.ticks < c.deadline_tick:
            return
        d = self.d
        secs = self._ms(self.ticks - c.started_tick) / 1000
        if c.kind == JOIN and c.phase == "handshake":
            j = d.members.join_op
            reason = (
                f"{c.node_id} at {j.raft_address if j else '?'} did not answer the join handshake within "
                f"{secs:g} s; nothing was changed"
            )
            if j is not None and j.node_id == c.node_id:
                d.members._end_join(error=ChangeRolledBack(reason, c.node_id))
            self._end("rolled_back", reason)
        elif c.kind == JOIN and c.phase == "learner":
            self._rollback(c, secs)
        else:
            # A configuration that cannot commit (no quorum) or a transfer nobody took: stop
            # tracking; the core still refuses a new change until the entry commits.
            self._end("unfinished", f"no outcome within {secs:g} s; the cluster goes on without waiting for it")

    def _rollback(self, c: Change, secs: float) -> None:
        d = self.d
        core = d.core
        if core.role != LEADER or core.config_change_blocker() is not None:
            return  # e.g. the learner's own configuration has not committed yet: try next tick
        member = core.membership.get(c.node_id)
        if member is None or member.voter:
            return  # update() sees it gone or promoted
        pr = core.progress.get(c.node_id)
        match = pr.match if pr is not None else 0
        reason = (
            f"learner {c.node_id} did not catch up within {secs:g} s (match index {match} of {core.commit}, "
            f"about {c.bytes_to_send} bytes to receive at >= {self.bytes_per_tick * 1000 // max(1, self.tick_ms)} "
            "bytes/s): removed again"
        )
        # Retired like any removed member: it may have seen (and voted under) a configuration,
        # never committed, that promoted it.
        new = core.membership.without(c.node_id)
        try:
            d.members._propose_config(new, Waiter("config"))
        except NotLeader:
            return
        waiter = d.members.promotions.pop(c.node_id, None) or c.waiter
        if waiter is not None:
            waiter._finish(error=ChangeRolledBack(reason, c.node_id))
        self.counters["rollbacks"] += 1
        record = {"node_id": c.node_id, "reason": reason, "bytes_to_send": c.bytes_to_send, "match_index": match}
        self.rollbacks.append(record)
        self._rollback_ticks.append(self.ticks)
        self._event("learner_rolled_back", node_id=c.node_id, reason=reason)
        self.current = Change("rollback", c.node_id, "commit", self.ticks, self.ticks + self.timeout_ticks)

    def update(self) -> None:
        """After every ``process()``: move the change along its phases, end it when done."""
        d = self.d
        core = d.core
        if self.join_waiters:
            self._settle_join_waiters()
        c = self.current
        if c is not None and c.waiter is not None and c.waiter.done:
            c.waiter = None  # answered, or the caller went away: the change is the cluster's now
        leader = core.role == LEADER
        if c is None:
            if leader:
                self._adopt_learner()
            return
        m = core.membership
        committed = core.membership_index <= core.commit
        if c.kind in (REMOVE, "rollback"):
            if c.node_id not in m.ids and committed:
                self._end("done")
            elif not leader:
                self._end("interrupted", "leadership changed before the change was committed")
            return
        if c.kind == TRANSFER:
            if not leader:
                outcome = "done" if core.leader_id == c.node_id else "interrupted"
                self._end(outcome, f"leader now {core.leader_id or 'unknown'}")
            elif core.lead_transferee is None:
                self._end("unfinished", f"{c.node_id} did not take over")
            return
        # a join
        if not leader:
            self._end("interrupted", "leadership changed; the next leader tracks the learner")
            return
        j = d.members.join_op
        if j is not None and j.node_id == c.node_id:
            return  # still in the handshake
        member = m.get(c.node_id)
        if member is None:
            self._end("failed", "the join was refused or abandoned before the node was added")
        elif not member.voter:
            if c.phase != "learner":
                self._start_learner(c)
        else:
            c.phase = "promotion"
            if committed:
                self._end("done")

    def _start_learner(self, c: Change) -> None:
        c.phase = "learner"
        c.bytes_to_send = self.bytes_to_send(c.node_id)
        c.deadline_tick = self.ticks + catchup_deadline_ticks(
            c.bytes_to_send, base_ticks=self.timeout_ticks, bytes_per_tick=self.bytes_per_tick
        )

    def _adopt_learner(self) -> None:
        core = self.d.core
        if self.d.members.join_op is not None or core.config_change_blocker() is not None:
            return
        m = core.membership
        for member in m.members:
            if not member.voter:
                c = Change(JOIN, member.id, "learner", self.ticks, self.ticks, adopted=True)
                self._start_learner(c)
                self.current = c
                self._event("change_adopted", change=self.describe(c))
                return


def _said(info: dict[str, Any]) -> str:
    return f"{info.get('kind')} of {info.get('node_id')} ({info.get('phase')}, for {info.get('age_ms', 0) / 1000:g} s)"
