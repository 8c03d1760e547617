"""An in-memory, single-node stand-in for ``NodeRuntime`` (API tests).

It keeps the interface the HTTP API codes against (write, read_barrier, get_local, scan,
count, applied_index, now_ms, status, join, remove, nodes, transfer_leadership) with no Raft,
storage or transport: a committed "log" is a list of commands applied at once with the real
state machine (``beaver_vault.kv.state.apply`` over a ``MemoryKV``), so results and revisions
have the real shapes. Watches are the real ones: ``watch`` and ``next_events`` are inherited
from ``NodeRuntime`` and read ``self.watch_hub``, which ``write`` feeds as the real runtime's
apply callback does.

Tests steer it:

* ``fail_next(exc, method=None)``: the next call (of ``method``, or of any runtime call
  that can fail) raises ``exc`` and changes nothing;
* ``follow(leader_id, leader_http)``: behave as a follower: every leader-only call raises
  ``NotLeader(leader_id, leader_http)`` (``lead()`` undoes it);
* ``hang_next(method=None)``: the next call blocks until cancelled (timeout handling);
* ``clock_ms``: what ``now_ms()`` answers (a test moves it by hand);
* ``log``, ``barriers``: what was written and how many read barriers were taken, so a test
  can assert that a rejected request appended nothing.
"""

from __future__ import annotations

from typing import Any

import trio

from beaver_vault.errors import NotLeader, Rejected
from beaver_vault.kv.memory import MemoryKV
from beaver_vault.kv.state import KeyRecord, apply
from beaver_vault.node.events import EventJournal
from beaver_vault.node.runtime import NodeRuntime
from beaver_vault.node.status import MemberStatus, NodeStatus
from beaver_vault.node.watch import WatchHub
from beaver_vault.raft.messages import Member, Membership


class FakeRuntime(NodeRuntime):
    def __init__(self, node_id: str = "node1", *, http_address: str = "http://127.0.0.1:8000") -> None:
        # Deliberately not calling NodeRuntime.__init__: this is a stand-in, not a runtime.
        self.node_id = node_id
        self.http_address = http_address
        self.raft_address = "127.0.0.1:7000"
        self.store = MemoryKV()
        self.log: list[bytes] = []  # every command applied, in order
        self.barriers = 0
        self.clock_ms = 1_700_000_000_000
        self.watch_hub = WatchHub(1)
        self.term = 1
        self.membership = Membership((Member(node_id, self.raft_address, http_address),))
        self._leader: tuple[str | None, str | None] | None = None  # None: this node leads
        self._failures: list[tuple[str | None, BaseException]] = []
        self._hangs: list[str | None] = []
        self.removals: list[tuple[str, bool]] = []  # (node_id, force) of every removal asked
        self.events = EventJournal(clock_ms=lambda: self.clock_ms)

    # ------------------------------------------------------------------ steering

    def fail_next(self, exc: BaseException, method: str | None = None) -> None:
        self._failures.append((method, exc))

    def hang_next(self, method: str | None = None) -> None:
        self._hangs.append(method)

    def follow(self, leader_id: str | None, leader_http: str | None) -> None:
        self._leader = (leader_id, leader_http)

    def lead(self) -> None:
        self._leader = None

    async def _enter(self, method: str, *, leader_only: bool = True) -> None:
        """Common prologue of every call: injected hangs, failures, then leadership."""
        await trio.lowlevel.checkpoint()
        for i, wanted in enumerate(self._hangs):
            if wanted in (None, method):
                del self._hangs[i]
                await trio.sleep_forever()
        for i, (wanted, exc) in enumerate(self._failures):
            if wanted in (None, method):
                del self._failures[i]
                raise exc
        if leader_only and self._leader is not None:
            raise NotLeader(*self._leader)

    # ------------------------------------------------------------------ NodeRuntime

    async def write(self, command: bytes, *, timeout_s: float) -> dict[str, Any]:
        assert timeout_s > 0
        await self._enter("write")
        index = self.applied_index() + 1
        self.log.append(command)
        result = apply(self.store, index, command)
        self._on_applied(index, result)  # the real runtime's apply callback: watch events, auth changes
        return result

    async def read_barrier(self, *, timeout_s: float) -> int:
        assert timeout_s > 0
        await self._enter("read_barrier")
        self.barriers += 1
        return self.applied_index()

    def get_local(self, key: str) -> KeyRecord | None:
        return self.store.get(key)

    def applied_index(self) -> int:
        return len(self.log) + 1  # index 1 is the bootstrap configuration entry

    def now_ms(self) -> int:
        return self.clock_ms

    def scan(self, prefix: str, after: str | None, limit: int) -> list[tuple[str, KeyRecord]]:
        return self.store.scan(prefix, after, limit)

    def auth_get(self, kind: str, name: str) -> str | None:
        return self.store.auth_get(kind, name)

    def auth_scan(self, kind: str) -> list[tuple[str, str]]:
        return self.store.auth_scan(kind)

    def count(self, prefix: str, page: int = 1000) -> int:
        return len(self.store.scan(prefix, None, len(self.store)))

    def counters(self) -> dict[str, int]:
        return {"node_proposals": len(self.log)}

    def status(self) -> NodeStatus:
        leader_id = self.node_id if self._leader is None else self._leader[0]
        return NodeStatus(
            node_id=self.node_id,
            role="leader" if self._leader is None else "follower",
            term=self.term,
            leader_id=leader_id,
            commit_index=self.applied_index(),
            applied_index=self.applied_index(),
            last_log_index=self.applied_index(),
            cluster_id="fake-cluster",
            members=tuple(MemberStatus(m.id, m.raft_address, m.http_address, m.voter) for m in self.membership.members),
            http_address=self.http_address,
            raft_address=self.raft_address,
        )

    async def join(
        self, node_id: str, raft_address: str, *, timeout_s: float, force: bool = False, update_address: bool = False
    ) -> Membership:
        assert timeout_s > 0
        await self._enter("join")
        if self.membership.get(node_id) is not None:
            raise Rejected(f"{node_id} is already a member", status=409)
        self.membership = self.membership.with_member(Member(node_id, raft_address, f"http://{node_id}.invalid"))
        return self.membership

    async def remove(self, node_id: str, *, timeout_s: float, force: bool = False) -> Membership:
        assert timeout_s > 0
        await self._enter("remove")
        self.removals.append((node_id, force))
        if self.membership.get(node_id) is None:
            raise Rejected(f"{node_id} is not a member", status=404)
        self.membership = Membership(tuple(m for m in self.membership.members if m.id != node_id))
        return self.membership

    def what_if(self, kind: str, node_id: str | None) -> dict[str, Any]:
        if self._leader is not None:
            raise NotLeader(*self._leader)
        return {"dry_run": True, "change": {"kind": kind, "node_id": node_id}}

    def membership_activity(self) -> dict[str, Any]:
        return {"change": None, "recent_rollbacks": []}

    def nodes(self) -> list[dict[str, Any]]:
        if self._leader is not None:
            raise NotLeader(*self._leader)
        return [
            {
                "id": m.id,
                "role": "leader" if m.id == self.node_id else ("follower" if m.voter else "learner"),
                "voter": m.voter,
                "raft_address": m.raft_address,
                "http_address": m.http_address,
                "match_index": self.applied_index(),
                "lag": 0,
                "last_contact_ms": None if m.id == self.node_id else 0,
                "reachable": True,
            }
            for m in self.membership.members
        ]

    async def transfer_leadership(self, node_id: str | None, *, timeout_s: float, force: bool = False) -> str:
        assert timeout_s > 0
        await self._enter("transfer_leadership")
        others = [m.id for m in self.membership.members if m.id != self.node_id and m.voter]
        target = node_id if node_id is not None else (others[0] if others else None)
        if target is None or self.membership.get(target) is None:
            raise Rejected(f"no such voter to transfer leadership to: {target}", status=404)
        member = self.membership.get(target)
        self.follow(target, member.http_address if member is not None else None)
        return target
