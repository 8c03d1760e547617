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
  entry took its index), a cas that found another value, any read that produced no value;
* info: a proposed write whose answer did not come back in time (the client abandons the
  waiter, as the runtime does) or whose node crashed under it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from beaver_vault.errors import NotLeader, Rejected
from beaver_vault.kv import commands
from beaver_vault.node.driver import NodeDriver, Waiter
from sim.params import derive

if TYPE_CHECKING:
    from sim.world import SimNode, World

HOP_MIN_MS, HOP_MAX_MS = 1, 3


@dataclass(slots=True)
class Op:
    process: int
    f: str
    key: str
    value: Any
    command: bytes
    deadline: int
    closed: bool = False
    proposed: bool = False
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
        if roll < 0.35:
            key = r.choice(self.register_keys + self.list_keys)
            op = self._op(process, "read", key, None, b"")
        elif roll < 0.60:
            key = r.choice(self.register_keys)
            op = self._op(process, "write", key, v, commands.put(key, v))
            self.last_value[key] = v
        elif roll < 0.75:
            key = r.choice(self.register_keys)
            expected = self.last_value.get(key) if r.random() < 0.8 else r.randint(1, max(1, v))
            op = self._op(process, "cas", key, [expected, v], commands.cas(key, expected, v))
            self.last_value[key] = v
        elif roll < 0.80:
            key = r.choice(self.register_keys + self.list_keys)
            op = self._op(process, "delete", key, None, commands.delete(key))
            self.last_value[key] = None
        else:
            key = r.choice(self.list_keys)
            op = self._op(process, "append", key, v, commands.append(key, v))
        self._begin(op)

    def _op(self, process: int, f: str, key: str, value: Any, command: bytes) -> Op:
        return Op(process, f, key, value, command, self.w.queue.now + self.w.params.op_timeout_ms)

    def _begin(self, op: Op) -> None:
        self.open[op.process] = op
        self._record(op, "invoke", op.value)
        self.w.queue.at(op.deadline, self._timeout, op)
        target = self.leader_hint.get(op.process) or self.rng.choice(self.w.nodes).id
        self._send(op, target)

    def _send(self, op: Op, node_id: str) -> None:
        self.w.queue.after(self.rng.randint(HOP_MIN_MS, HOP_MAX_MS), self._arrive, op, node_id)

    def _retry(self, op: Op, node_id: str | None) -> None:
        if node_id is None:
            node_id = self.rng.choice(self.w.nodes).id
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
        if op.f == "read":
            result = w.call(node, lambda d: d.read())
        else:
            cmd = op.command
            result = w.call(node, lambda d: d.propose(cmd))
        if result is None:
            # The node crashed while handling it: the connection dropped with no answer. A write
            # may already be durable in its log (and commit later): unknown, never retried.
            if op.f == "read":
                self._retry(op, None)
            else:
                self._complete(op, "info", op.value)
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
        if op.f != "read":
            op.proposed = True
        waiter = result
        op.pending = (node, node.incarnation, waiter)
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
            elif isinstance(waiter.error, Rejected):
                self._reply(op, "fail", op.value)
            else:
                self._reply(op, "info", op.value)
            return
        if op.f == "read":
            d = node.driver
            assert d is not None
            self._reply(op, "ok", _read(d, op.key))
            return
        result = waiter.result
        if not isinstance(result, dict) or "error" in result:
            raise RuntimeError(f"unexpected apply result for {op.f} {op.key}: {result!r}")
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
        outcome = "info" if op.proposed else "fail"
        self._complete(op, outcome, op.value)
        if pending is not None:
            node, incarnation, waiter = pending
            d = node.driver
            if d is not None and node.incarnation == incarnation:
                d.abandon(waiter)  # as the runtime does when a request's deadline expires

    def _node_crashed(self, node: SimNode) -> None:
        for op in list(self.open.values()):
            if op.pending is not None and op.pending[0] is node:
                # The connection dropped: a proposed write may or may not have happened.
                op.pending = None
                if op.f == "read":
                    self._retry(op, None)
                else:
                    self._complete(op, "info", op.value)

    # ---------------------------------------------------------------- liveness

    def liveness_write(self, deadline: int) -> None:
        process = self.liveness_process
        self.liveness_deadline = deadline
        self.next_value += 1
        key = self.register_keys[0]
        v = self.next_value
        op_deadline = min(deadline, self.w.queue.now + self.w.params.op_timeout_ms)
        op = Op(process, "write", key, v, commands.put(key, v), op_deadline)
        self._begin(op)


def _read(d: NodeDriver, key: str) -> Any:
    rec = d.get(key)
    return None if rec is None else rec.document()
