"""A tiny in-memory network of pure RaftCores for transcript-style tests (no driver, no I/O).

``deliver`` controls which messages arrive: tests drop, reorder and partition by choosing.
Each node's "disk" is what it persisted through Ready; ``crash(n)`` rebuilds a node from it.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from beaver_vault.raft.config import RaftConfig
from beaver_vault.raft.core import LEADER, RaftCore
from beaver_vault.raft.messages import Entry, EntryKind, HardState, Member, Membership, RaftMessage, ReadState


@dataclass
class Disk:
    hard_state: HardState = HardState()
    log: list[Entry] = field(default_factory=list)
    applied: list[Entry] = field(default_factory=list)


def bootstrap_entries(ids: list[str]) -> list[Entry]:
    m = Membership(tuple(Member(i, f"{i}:7000") for i in ids))
    return [Entry(1, 1, EntryKind.CONFIG, m.encode())]


class Cluster:
    def __init__(self, ids: list[str], seed: int = 0, config: RaftConfig | None = None) -> None:
        self.ids = ids
        self.cfg = config or RaftConfig(election_ticks=10, heartbeat_ticks=2)
        self.rng = random.Random(seed)
        self.disks = {i: Disk(HardState(1, None, 1), bootstrap_entries(ids)) for i in ids}
        self.nodes: dict[str, RaftCore] = {}
        for i in ids:
            self.restart(i)
        self.net: list[RaftMessage] = []
        self.down: set[str] = set()
        self.cut: set[frozenset[str]] = set()
        # every (index -> entry) ever reported committed by anyone: must never change
        self.committed: dict[int, Entry] = {}
        self.leaders_by_term: dict[int, str] = {}
        self.read_states: dict[str, list[ReadState]] = {i: [] for i in ids}

    def restart(self, i: str) -> None:
        d = self.disks[i]
        self.nodes[i] = RaftCore(i, self.cfg, random.Random(self.rng.random()), d.hard_state, list(d.log), len(d.applied))

    def crash(self, i: str) -> None:
        self.restart(i)

    def process(self, i: str) -> None:
        n = self.nodes[i]
        while n.has_ready():
            rd = n.ready()
            d = self.disks[i]
            if rd.entries:
                first = rd.entries[0].index
                del d.log[first - 1 :]
                d.log.extend(rd.entries)
            if rd.hard_state is not None:
                d.hard_state = rd.hard_state
            if i not in self.down:
                self.net.extend(rd.messages)
            for e in rd.committed:
                if e.index != len(d.applied) + 1:
                    raise AssertionError(f"{i} applied out of order: {e.index}")
                d.applied.append(e)
                seen = self.committed.setdefault(e.index, e)
                if seen != e:
                    raise AssertionError(f"committed entry {e.index} changed: {seen} vs {e}")
            self.read_states.setdefault(i, []).extend(rd.read_states)
            n.advance(rd)
            self.check_leader(i)

    def check_leader(self, i: str) -> None:
        n = self.nodes[i]
        if n.role == LEADER:
            other = self.leaders_by_term.setdefault(n.term, i)
            if other != i:
                raise AssertionError(f"two leaders in term {n.term}: {other} and {i}")

    def tick(self, i: str) -> None:
        self.nodes[i].tick()
        self.process(i)

    def tick_all(self) -> None:
        for i in self.ids:
            if i not in self.down:
                self.tick(i)

    def blocked(self, m: RaftMessage) -> bool:
        return m.src in self.down or m.dst in self.down or frozenset((m.src, m.dst)) in self.cut

    def deliver_one(self, k: int = 0) -> None:
        m = self.net.pop(k)
        if not self.blocked(m) and m.dst in self.nodes:
            self.nodes[m.dst].step(m)
            self.process(m.dst)

    def deliver_all(self, limit: int = 100_000, pick: Callable[[list[RaftMessage]], int] | None = None) -> None:
        for _ in range(limit):
            if not self.net:
                return
            self.deliver_one(pick(self.net) if pick else 0)
        raise AssertionError("message storm")

    def run(self, ticks: int) -> None:
        for _ in range(ticks):
            self.tick_all()
            self.deliver_all()

    def partition(self, *groups: list[str]) -> None:
        self.cut = set()
        for a in self.ids:
            for b in self.ids:
                if a < b and not any(a in g and b in g for g in groups):
                    self.cut.add(frozenset((a, b)))

    def heal(self) -> None:
        self.cut = set()
        self.down = set()

    def leader(self) -> str | None:
        ls = [i for i in self.ids if i not in self.down and self.nodes[i].role == LEADER]
        if not ls:
            return None
        return max(ls, key=lambda i: self.nodes[i].term)

    def wait_leader(self, max_ticks: int = 500) -> str:
        for _ in range(max_ticks):
            ld = self.leader()
            if ld is not None and all(
                self.nodes[i].leader_id == ld for i in self.ids if i not in self.down and not self.blocked_pair(i, ld)
            ):
                return ld
            self.run(1)
        raise AssertionError("no leader elected")

    def blocked_pair(self, a: str, b: str) -> bool:
        return frozenset((a, b)) in self.cut

    def propose(self, i: str, data: bytes) -> tuple[int, int]:
        r = self.nodes[i].propose(data)
        self.process(i)
        return r
