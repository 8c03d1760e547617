"""Clients: they issue read, write, cas, delete and append and record the history.

A client is one history ``process``: at most one operation open at a time, then a think time.
Register keys (``r*``) get write/cas/delete/read; list keys (``l*``) get append/delete/read, so
an append never meets a non-list. Values are unique integers, so a read tells which write it saw.

An operation travels like an HTTP request: a short hop to a node, a call into the production
driver (``propose``/``read``; on ``NotLeader`` it retries at the hinted leader, on ``NoLeader``,
``Overloaded`` or a refused connection at a random node, after a backoff), then the answer
hops back. Outcomes follow the driver's rules and the history format:

* ok: the driver said it was applied (cas: ``succeeded``) or, for a read, the confirmed read
  point was reached -- the value is read from the node's applied state right then;
* fail: certainly not applied -- never proposed before the deadline, ``Rejected`` (another
  entry took its index) when no earlier attempt may have applied it, a cas that found another
  value, any read that produced no value;
* info: a proposed write whose answer did not come back in time (the client abandons the
  waiter, as the runtime does) or whose node crashed under it, with no retry left.

Exactly-once: every write carries ``request={"client", "id", "now_ms"}`` (the idempotency key
the HTTP API turns into a request). An attempt whose outcome is unknown (its answer timed out,
its node crashed, leadership was lost) is retried up to ``write_retries`` times with the SAME
id, against whichever node leads now, within the op's overall deadline; the state machine
applies it at most once and a repeat answers the original result with ``"duplicate": true``.
The history shows one operation from the first invoke to the final answer, so a write applied
twice (an ``append`` seen twice) is a linearizability failure. The planted bug ``dup-retry``
retries with a FRESH id (the client forgets its key): the seam is here, in the client.

Reads go to the node the client believes leads, or with ``follower_read_p`` to any node: a
follower serves a linearizable read itself after getting a read index from the leader.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beaver_vault.errors import NotLeader, Rejected
from beaver_vault.kv import commands
from beaver_vault.node.driver import NodeDriver, Waiter
from beaver_vault.raft.core import LEADER
from sim.params import derive

if TYPE_CHECKING:
    from sim.machine import SimNode
    from sim.world import World

HOP_MIN_MS, HOP_MAX_MS = 1, 3


def _command(fn: Callable[..., bytes], *args: Any) -> Callable[[dict[str, Any] | None], bytes]:
    """A write's command, built for each attempt with that attempt's request id."""
    return lambda req: fn(*args, request=req)


@dataclass(slots=True)
class Op:
    process: int
    f: str
    key: str
    value: Any
    build: Callable[[dict[str, Any] | None], bytes] | None  # writes: the command, given a request
    deadline: int  # the whole operation, retries included
    closed: bool = False
    uncertain: bool = False  # an earlier attempt may have been applied (its outcome is unknown)
    follower: bool = False  # a read served by a follower
    retries_left: int = 0
    request_id: str = ""
    attempts: int = 0
    pending: tuple[SimNode, int, Waiter] | None = None  # node, incarnation, waiter
    on_close: list[Any] = field(default_factory=list)


class Workload:
    def __init__(self, world: World) -> None:
        self.w = world
        p = world.params
        self.rng = derive(p.seed, "clients")
        self.history: list[dict[str, Any]] = []
        self.open: dict[int, Op] = {}
        self.invoked = 0
        self.next_value = 0
        self.register_keys = [f"r{i}" for i in range(max(1, p.keys - 1))]
        self.list_keys = ["l0"] if p.keys < 5 else ["l0", "l1"]
        self.last_value: dict[str, Any] = {}
        self.leader_hint: dict[int, str] = {}
        self.running = False
        self.counts = {"ok": 0, "fail": 0, "info": 0}
        self.stats = {"follower_reads": 0, "retries": 0, "dup_suppressed": 0}
        self.next_request = 0
        world.crash_listeners.append(self._node_crashed)
        # The liveness phase's fresh write is a client op too (its own process id).
        self.liveness_process = p.clients
        self.liveness_done = False
        self.liveness_deadline = 0

    # ---------------------------------------------------------------- history

    def _record(self, op: Op, type_: str, value: Any) -> None:
        self.history.append(
            {
                "process": op.process,
                "type": type_,
                "f": op.f,
                "key": op.key,
                "value": value,
                "time": self.w.queue.now * 1_000_000,
            }
        )

    def write_history(self, path: str) -> None:
        with open(path, "w", encoding="utf-8") as fh:
            for event in self.history:
                fh.write(json.dumps(event, separators=(", ", ": ")) + "\n")

    # ---------------------------------------------------------------- client loop

    def start(self) -> None:
        self.running = True
        for process in range(self.w.params.clients):
            self.w.queue.after(self.rng.randint(0, 50), self._invoke, process)

    def stop(self) -> None:
        self.running = False

    def _invoke(self, process: int) -> None:
        if not self.running or self.invoked >= self.w.params.ops or process in self.open:
            return
        self.invoked += 1
        r = self.rng
        self.next_value += 1
        v = self.next_value
        roll = r.random()
        build: Callable[[dict[str, Any] | None], bytes] | None
        if roll < 0.35:
            key = r.choice(self.register_keys + self.list_keys)
            op = self._op(process, "read", key, None, None)
        elif roll < 0.60:
            key = r.choice(self.register_keys)
            op = self._op(process, "write", key, v, _command(commands.put, key, v))
            self.last_value[key] = v
        elif roll < 0.75:
            key = r.choice(self.register_keys)
            expected = self.last_value.get(key) if r.random() < 0.8 else r.randint(1, max(1, v))
            build = _command(commands.cas, key, expected, v)
            op = self._op(process, "cas", key, [expected, v], build)
            self.last_value[key] = v
        elif roll < 0.80:
            key = r.choice(self.register_keys + self.list_keys)
            op = self._op(process, "delete", key, None, _command(commands.delete, key))
            self.last_value[key] = None
        else:
            key = r.choice(self.list_keys)
            op = self._op(process, "append", key, v, _command(commands.append, key, v))
        self._begin(op)

    def _op(
        self, process: int, f: str, key: str, value: Any, build: Callable[[dict[str, Any] | None], bytes] | None
    ) -> Op:
        p = self.w.params
        retries = p.write_retries if build is not None else 0
        op = Op(process, f, key, value, build, self.w.queue.now + p.op_timeout_ms * (1 + retries))
        op.retries_left = retries
        op.request_id = self._new_request_id()
        return op

    def _new_request_id(self) -> str:
        self.next_request += 1
        return str(self.next_request)

    def _machines(self) -> list[SimNode]:
        return [n for n in self.w.nodes if n.incarnation > 0]

    def _begin(self, op: Op) -> None:
        self.open[op.process] = op
        self._record(op, "invoke", op.value)
        self.w.queue.at(op.deadline, self._timeout, op)
        fr = self.w.params.follower_read_p
        if op.f == "read" and fr and self.rng.random() < fr:
            target = self.rng.choice(self._machines()).id  # any node; a follower asks the leader
        else:
            target = self.leader_hint.get(op.process) or self.rng.choice(self._machines()).id
        self._send(op, target)

    def _send(self, op: Op, node_id: str) -> None:
        self.w.queue.after(self.rng.randint(HOP_MIN_MS, HOP_MAX_MS), self._arrive, op, node_id)

    def _retry(self, op: Op, node_id: str | None) -> None:
        if node_id is None:
            node_id = self.rng.choice(self._machines()).id
        self.w.queue.after(self.rng.randint(10, 40), self._send, op, node_id)

    def _arrive(self, op: Op, node_id: str) -> None:
        if op.closed:
            return
        w = self.w
        node = w.by_id[node_id]
        if node.driver is None:
            self._retry(op, None)  # connection refused
            return
        if w.busy(node, self._arrive, op, node_id):
            return
        op.attempts += 1
        if op.build is None:
            result = w.call(node, lambda d: d.read())
        else:
            # The leader stamps its clock into the request (as the HTTP API does), each attempt.
            req = {"client": f"c{op.process}", "id": op.request_id, "now_ms": w.queue.now}
            cmd = op.build(req)
            result = w.call(node, lambda d: d.propose(cmd))
        if result is None:
            # The node crashed while handling it: the connection dropped with no answer. A write
            # may already be durable in its log (and commit later): unknown.
            if op.f == "read":
                self._retry(op, None)
            else:
                op.uncertain = True
                self._again(op)
            return
        if self.w.verbose:
            what = "waiting" if isinstance(result, Waiter) else type(result).__name__
            self.w.log(f"client {op.process} {op.f} {op.key} at {node_id}: {what}")
        if isinstance(result, NotLeader):
            hint = result.leader_id if result.leader_id and result.leader_id != node_id else None
            if hint is not None:
                self.leader_hint[op.process] = hint
            self._retry(op, hint)
            return
        if not isinstance(result, Waiter):
            self._retry(op, None)  # NoLeader, Overloaded, Rejected before entering the log
            return
        self.leader_hint[op.process] = node_id
        waiter = result
        op.pending = (node, node.incarnation, waiter)
        if op.f == "read":
            d = node.driver
            op.follower = d is not None and d.core.role != LEADER
        elif op.retries_left:
            # An attempt that does not answer in time is abandoned and retried (same id).
            w.queue.after(w.params.op_timeout_ms, self._attempt_timeout, op, waiter)
        if waiter.done:
            self._answered(op, node, waiter)
        else:
            waiter.on_done = lambda: self._answered(op, node, waiter)

    def _answered(self, op: Op, node: SimNode, waiter: Waiter) -> None:
        """Called from inside the node's ``process()``: do not call into the driver (but a
        local ``get`` of applied state, as the HTTP handler does)."""
        if op.closed or op.pending is None or op.pending[2] is not waiter:
            return
        op.pending = None
        if waiter.error is not None:
            if op.f == "read":
                self._retry(op, None)  # leadership lost before the read was confirmed: try again
            elif isinstance(waiter.error, Rejected) and not op.uncertain:
                self._reply(op, "fail", op.value)  # this attempt was not applied, nor any before
            else:
                if not isinstance(waiter.error, Rejected):
                    op.uncertain = True
                self.w.queue.after(0, self._again, op)
            return
        if op.f == "read":
            d = node.driver
            assert d is not None
            if op.follower:
                self.stats["follower_reads"] += 1
            self._reply(op, "ok", _read(d, op.key))
            return
        result = waiter.result
        if not isinstance(result, dict) or "error" in result:
            raise RuntimeError(f"unexpected apply result for {op.f} {op.key}: {result!r}")
        if result.get("duplicate"):
            self.stats["dup_suppressed"] += 1
        if op.f == "cas" and not result.get("succeeded"):
            self._reply(op, "fail", op.value)
        else:
            self._reply(op, "ok", op.value)

    def _reply(self, op: Op, type_: str, value: Any) -> None:
        self.w.queue.after(self.rng.randint(HOP_MIN_MS, HOP_MAX_MS), self._complete, op, type_, value)

    def _complete(self, op: Op, type_: str, value: Any) -> None:
        if op.closed:
            return
        op.closed = True
        op.pending = None
        self.open.pop(op.process, None)
        self._record(op, type_, value)
        self.counts[type_] += 1
        self.w.log(f"client {op.process} {type_} {op.f} {op.key} {json.dumps(value)}")
        if op.process == self.liveness_process:
            if type_ == "ok":
                self.liveness_done = True
            elif self.w.phase == "liveness" and self.w.queue.now < self.liveness_deadline:
                # Like any client: after a failure or a timeout, try a new write (a fresh value).
                self.liveness_write(self.liveness_deadline)
            return
        self.w.queue.after(self.rng.randint(0, 30), self._invoke, op.process)

    def _timeout(self, op: Op) -> None:
        if op.closed:
            return
        pending = op.pending
        # A timeout is always an unknown outcome to the client (HISTORY-FORMAT.md): even with no
        # attempt pending, an answer may be on its way back (a success included).
        self._complete(op, "info", op.value)
        if pending is not None:
            self._abandon(pending)

    def _abandon(self, pending: tuple[SimNode, int, Waiter]) -> None:
        node, incarnation, waiter = pending
        d = node.driver
        if d is not None and node.incarnation == incarnation:
            d.abandon(waiter)  # as the runtime does when a request's deadline expires

    def _attempt_timeout(self, op: Op, waiter: Waiter) -> None:
        if op.closed or op.pending is None or op.pending[2] is not waiter:
            return
        pending = op.pending
        op.pending = None
        op.uncertain = True
        self._abandon(pending)
        self._again(op)

    def _again(self, op: Op) -> None:
        """A write attempt ended with an unknown outcome: retry it with the same request id
        (exactly-once makes that safe) while retries and time remain; else the op is ``info``."""
        if op.closed:
            return
        if op.retries_left <= 0 or self.w.queue.now >= op.deadline:
            self._complete(op, "info", op.value)
            return
        op.retries_left -= 1
        self.stats["retries"] += 1
        if self.w.params.bug == "dup-retry":
            op.request_id = self._new_request_id()  # PLANTED BUG (client side): a fresh id
        self.w.log(f"client {op.process} retry {op.f} {op.key} id={op.request_id}")
        self._retry(op, None)

    def _node_crashed(self, node: SimNode) -> None:
        for op in list(self.open.values()):
            if op.pending is not None and op.pending[0] is node:
                # The connection dropped: a proposed write may or may not have happened.
                op.pending = None
                if op.f == "read":
                    self._retry(op, None)
                else:
                    op.uncertain = True
                    self.w.queue.after(0, self._again, op)

    # ---------------------------------------------------------------- liveness

    def liveness_write(self, deadline: int) -> None:
        process = self.liveness_process
        self.liveness_deadline = deadline
        self.next_value += 1
        key = self.register_keys[0]
        v = self.next_value
        op = self._op(process, "write", key, v, _command(commands.put, key, v))
        op.deadline = min(deadline, op.deadline)
        self._begin(op)


def _read(d: NodeDriver, key: str) -> Any:
    rec = d.get(key)
    return None if rec is None else rec.document()
