"""A bounded journal of what happened to this node's Raft state, for operators.

Theory of operation: the journal is a ring buffer of :class:`RaftEvent` (a sequence number,
a wall-clock time, a kind and a few fields). It is fed from OUTSIDE the driver: a
:class:`StatusObserver` is shown the driver's ``status()`` and counters after every
processing step of the runtime and records what changed since the previous look:

* ``started``: the first look (role, term, members);
* ``election``: this node became a (pre-)candidate;
* ``role``: this node's role changed (``from``, ``to``);
* ``leader``: the leader this node knows changed (``from``, ``to``; ``to`` null: lost);
* ``membership``: the configuration changed (``added``, ``removed``, ``promoted``,
  ``demoted``, ``members``, ``index``);
* ``membership_rollback``: the configuration went back to an earlier one because an
  uncommitted configuration entry was overwritten by a new leader (its log index went down);
* ``snapshot_sent``: this leader started streaming a snapshot (``to`` when known);
* ``snapshot_installed``: this node replaced its state with a snapshot from the leader;
* ``compaction``: this node compacted its log into a snapshot (``snapshot_index``);
* ``change_rolled_back``: this leader undid a membership change on its own deadline
  (``what``: ``learner`` that did not catch up, or ``join handshake`` nobody answered;
  ``node_id``, ``reason``). Recorded by the runtime from ``node/membership_change.py``.

Every event also carries the ``term`` at the time it was seen. Changes that begin and end
between two looks are not seen (a look happens after every batch of work, so only the
fleeting ones are missed); the journal is for people, never for correctness.

Memory is bounded: ``capacity`` events (older ones are dropped and counted), each with a
bounded number of fields. Readers page with ``since(after_seq)``; a reader that fell behind
is told how many events it missed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from beaver_vault.node.status import NodeStatus

DEFAULT_CAPACITY = 1000
PAGE_MAX = 1000
ELECTION_ROLES = ("pre-candidate", "candidate")


@dataclass(frozen=True, slots=True)
class RaftEvent:
    seq: int
    time_ms: int
    kind: str
    term: int
    fields: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"seq": self.seq, "time_ms": self.time_ms, "kind": self.kind, "term": self.term, **self.fields}


@dataclass(frozen=True, slots=True)
class EventPage:
    events: tuple[RaftEvent, ...]
    first_seq: int  # oldest seq still kept (0: none yet)
    last_seq: int  # newest seq recorded (0: none yet)
    missed: int  # events after ``after`` that were dropped before this read

    def to_json(self) -> dict[str, Any]:
        return {
            "events": [e.to_json() for e in self.events],
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "missed": self.missed,
        }


class EventJournal:
    """A ring buffer of Raft events with increasing sequence numbers (from 1)."""

    def __init__(self, *, capacity: int = DEFAULT_CAPACITY, clock_ms: Callable[[], int] | None = None) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._clock_ms = clock_ms or (lambda: 0)
        self._events: deque[RaftEvent] = deque(maxlen=capacity)
        self.last_seq = 0
        self.dropped = 0

    def record(self, kind: str, *, term: int, **fields: Any) -> RaftEvent:
        self.last_seq += 1
        if len(self._events) == self.capacity:
            self.dropped += 1
        event = RaftEvent(self.last_seq, self._clock_ms(), kind, term, dict(fields))
        self._events.append(event)
        return event

    @property
    def first_seq(self) -> int:
        return self._events[0].seq if self._events else 0

    def since(self, after: int = 0, limit: int = PAGE_MAX) -> EventPage:
        """Events with ``seq > after`` (oldest first), at most ``limit``."""
        limit = max(1, min(limit, PAGE_MAX))
        first = self.first_seq
        missed = max(0, first - after - 1) if first else max(0, self.last_seq - after)
        out: list[RaftEvent] = []
        if self._events and after < self.last_seq:
            start = max(0, after - first + 1)  # seqs are contiguous inside the buffer
            for i in range(start, min(len(self._events), start + limit)):
                out.append(self._events[i])
        return EventPage(tuple(out), first, self.last_seq, missed)


def _members(status: NodeStatus) -> dict[str, bool]:
    return {m.id: m.voter for m in status.members}


class StatusObserver:
    """Compares successive looks at a node and records the differences in a journal."""

    def __init__(self, journal: EventJournal) -> None:
        self.journal = journal
        self._last: NodeStatus | None = None
        self._counters: dict[str, int] = {}
        self._membership_index = 0
        self._senders: frozenset[str] = frozenset()

    def observe(
        self,
        status: NodeStatus,
        counters: Mapping[str, int],
        *,
        membership_index: int = 0,
        senders: Sequence[str] = (),
    ) -> None:
        prev = self._last
        record = self.journal.record
        term = status.term
        if prev is None:
            record(
                "started",
                term=term,
                role=status.role,
                leader=status.leader_id,
                members=sorted(_members(status)),
            )
        else:
            if status.role != prev.role:
                if status.role in ELECTION_ROLES and prev.role not in ELECTION_ROLES:
                    record("election", term=term, role=status.role)
                record("role", term=term, **{"from": prev.role, "to": status.role})
            if status.leader_id != prev.leader_id:
                record("leader", term=term, **{"from": prev.leader_id, "to": status.leader_id})
            before, after = _members(prev), _members(status)
            if before != after:
                kind = "membership_rollback" if membership_index < self._membership_index else "membership"
                record(
                    kind,
                    term=term,
                    added=sorted(set(after) - set(before)),
                    removed=sorted(set(before) - set(after)),
                    promoted=sorted(k for k, v in after.items() if v and before.get(k) is False),
                    demoted=sorted(k for k, v in after.items() if not v and before.get(k) is True),
                    members=sorted(after),
                    index=membership_index,
                )
            self._snapshot_events(status, counters, senders)
        self._last = status
        self._counters = {k: counters.get(k, 0) for k in ("snapshots_sent", "snapshots_installed", "compactions")}
        self._membership_index = membership_index
        self._senders = frozenset(senders)

    def _snapshot_events(self, status: NodeStatus, counters: Mapping[str, int], senders: Sequence[str]) -> None:
        term = status.term
        sent = counters.get("snapshots_sent", 0) - self._counters.get("snapshots_sent", 0)
        if sent > 0:
            new = sorted(set(senders) - self._senders)
            for i in range(sent):
                self.journal.record("snapshot_sent", term=term, to=new[i] if i < len(new) else None)
        installed = counters.get("snapshots_installed", 0) - self._counters.get("snapshots_installed", 0)
        if installed > 0:
            self.journal.record(
                "snapshot_installed", term=term, snapshot_index=status.snapshot_index, count=installed
            )
        compacted = counters.get("compactions", 0) - self._counters.get("compactions", 0)
        if compacted > 0:
            self.journal.record(
                "compaction",
                term=term,
                snapshot_index=status.snapshot_index,
                log_first_index=status.log_first_index,
                count=compacted,
            )
