"""The simulator as a product: run a user's workload file against the simulated cluster.

``python -m sim --workload FILE (--seed S | --seeds A..B) [--nodes N] [--faults ...]
[--storage memory|sqlite] [--bug NAME] [--timeline DIR] [--stop-on-failure]`` loads FILE (see ``sim.workload_api`` for what it
defines), and for each seed runs the same world as ``python -m sim`` (formation, a safety phase
with the seed's faults, a liveness phase, the linearizability check) with the workload's
clients instead of the built-in ones. Per seed it prints one verdict line; for each failure a
``REPRODUCE:`` line and the path of a timeline picture of that run (self-contained HTML).

Exit status: as ``python -m sim`` (0 ok, 10 crash -- also an exception raised by the workload
code --, 11 safety, 12 linearizability, 13 liveness, 14 undecided history), plus 15 for a
failed workload invariant (``state_invariant`` or ``check``). A swarm exits with the status of
its first failure.

How a call travels: exactly as the built-in clients' operations (``sim.workload``): a hop to a
node, the production driver (``propose``/``read``; redirects on NotLeader), retries of unknown
writes under the same idempotency key within the deadline, an answer hop back. Writes are
encoded with the production commands (``kv.commands``), so what is exercised is the real
state machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
from collections.abc import Callable, Generator
from dataclasses import dataclass
from types import ModuleType
from typing import Any, TextIO

from beaver_vault.kv import commands
from beaver_vault.node.driver import NodeDriver, Waiter
from beaver_vault.raft.core import LEADER
from sim.failures import EXIT_BY_KIND, EXIT_OK, SimFailure
from sim.params import Params, derive, draw, faults_text, overrides
from sim.run import Outcome, run
from sim.workload import Op, Workload
from sim.workload_api import (
    DEFAULT_CLIENTS,
    DEFAULT_OPS,
    FAIL,
    LIST_LIMIT,
    OK,
    UNKNOWN,
    Call,
    Client,
    OpRecord,
    Result,
)

SETUP = "setup"
EXPIRE_EVERY_MS = 250  # as the production runtime's expirer (options.expire_interval_ms)
EXPIRE_BATCH = 500
STATE_CHECK_MAX_KEYS = 10_000  # a limit on everything: a larger state is not handed to the invariant

DEFAULT_TIMELINES = "sim-timelines"
_STATUS = {"ok": OK, "fail": FAIL, "info": UNKNOWN}


@dataclass(frozen=True, slots=True)
class LoadedWorkload:
    path: str
    name: str
    module: ModuleType
    clients: int
    ops: int


def load(path: str) -> LoadedWorkload:
    """Import a workload file (a fresh module object per call: no state leaks between runs
    through module globals it creates at import time... which it should not keep anyway)."""
    if not os.path.isfile(path):
        raise ValueError(f"workload file not found: {path}")
    name = os.path.splitext(os.path.basename(path))[0]
    spec = importlib.util.spec_from_file_location(f"sim_workload_{name}", path)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot load {path} as a Python module")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "client", None)):
        raise ValueError(f"{path} defines no client(c, i, rng) generator function")
    clients = int(getattr(module, "CLIENTS", DEFAULT_CLIENTS))
    ops = int(getattr(module, "OPS", DEFAULT_OPS))
    if not 1 <= clients <= 64 or not 1 <= ops <= 100_000:
        raise ValueError(f"{path}: CLIENTS must be 1..64 and OPS 1..100000")
    return LoadedWorkload(path, name, module, clients, ops)


@dataclass(slots=True)
class _Op(Op):
    call: Call | None = None
    start_ms: int = 0


class ProductWorkload(Workload):
    """The built-in client machinery, driven by the user's generators instead of a random mix."""

    def __init__(self, world: Any, wl: LoadedWorkload) -> None:
        super().__init__(world)
        self.wl = wl
        self.register_keys = ["__sim/liveness"]  # the liveness phase's fresh write (checked too)
        self.client_api = Client(lambda: self.w.queue.now)
        self.gens: dict[int, Generator[Call, Result | None, None]] = {}
        self.names: dict[int, int | str] = {}
        self.results: dict[int, Result | None] = {}
        self.records: list[OpRecord] = []
        self.events: list[dict[str, Any]] = []  # the history of every call, checker format plus "ttl"
        self.raw: dict[int, dict[str, Any]] = {}  # apply results of answered cas/txn, until completion
        self.state_invariant: Callable[[dict[str, Any]], str | None] | None = getattr(
            wl.module, "state_invariant", None
        )
        if self.state_invariant is not None:
            world.apply_listeners.append(self._check_state)

    # ---------------------------------------------------------------- history

    def _record(self, op: Op, type_: str, value: Any) -> None:
        event = {
            "process": op.process,
            "type": type_,
            "f": op.f,
            "key": op.key,
            "value": value,
            "time": self.w.queue.now * 1_000_000,
        }
        call = op.call if isinstance(op, _Op) else None
        if call is not None and call.ttl_ms is not None:
            event["ttl_ms"] = call.ttl_ms
        self.events.append(event)

    def finish(self) -> None:
        """Build the linearizability checker's history: register operations only, on keys no
        transaction or TTL write touched (see ``workload_api``)."""
        tainted = set()
        for e in self.events:
            if e["f"] == "txn":
                tainted.update(e["value"][1])  # the keys the transaction touches
            elif e.get("ttl_ms") is not None:
                tainted.add(e["key"])
        registers = ("read", "write", "delete", "cas")
        self.history = [
            {k: v for k, v in e.items() if k != "ttl_ms"}
            for e in self.events
            if e["f"] in registers and e["key"] not in tainted
        ]
        check = getattr(self.wl.module, "check", None)
        if check is not None:
            why = check(list(self.records))
            if why is not None:
                raise SimFailure("invariant", f"check(ops): {why}")

    # ---------------------------------------------------------------- clients

    def start(self) -> None:
        self.running = True
        setup = getattr(self.wl.module, "setup", None)
        if setup is not None:
            self._spawn(self.w.params.clients + 1, SETUP, setup(self.client_api))
        else:
            self._start_clients()

    def _start_clients(self) -> None:
        for i in range(self.w.params.clients):
            rng = derive(self.w.params.seed, f"workload:{i}")
            self._spawn(i, i, self.wl.module.client(self.client_api, i, rng))

    def _spawn(self, process: int, name: int | str, gen: Generator[Call, Result | None, None]) -> None:
        self.gens[process] = gen
        self.names[process] = name
        self.results[process] = None
        self.w.queue.after(0, self._invoke, process)

    def _invoke(self, process: int) -> None:
        if not self.running or process in self.open or process not in self.gens:
            return
        gen = self.gens[process]
        if self.invoked >= self.w.params.ops:
            gen.close()
            del self.gens[process]
            return
        try:
            call = gen.send(self.results.pop(process, None))
        except StopIteration:
            del self.gens[process]
            if self.names[process] == SETUP:
                self._start_clients()
            return
        if not isinstance(call, Call):
            raise TypeError(f"workload client {self.names[process]} yielded {call!r}, not a Call (use c.put, c.get, ...)")
        if call.f == "sleep":
            self.results[process] = None
            self.w.queue.after(call.sleep_ms, self._invoke, process)
            return
        self.invoked += 1
        self.next_value += 1
        self._begin(self._make(process, call))

    def _make(self, process: int, call: Call) -> _Op:
        key, value = call.key, call.value
        build: Callable[[dict[str, Any] | None], bytes] | None = None
        history_value: Any = value
        ttl = call.ttl_ms
        if call.f == "put":
            def build(req: dict[str, Any] | None) -> bytes:
                exp = None if ttl is None or req is None else int(req["now_ms"]) + ttl
                return commands.put(key, value, expires_at_ms=exp, request=req)
        elif call.f == "delete":
            def build(req: dict[str, Any] | None) -> bytes:
                return commands.delete(key, request=req)
        elif call.f == "cas":
            expected, new = value
            history_value = [expected, new]
            if ttl is None:
                def build(req: dict[str, Any] | None) -> bytes:
                    return commands.cas(key, expected, new, request=req)
            else:
                compare = (
                    [{"key": key, "target": "exists", "op": "==", "value": False}]
                    if expected is None
                    else [{"key": key, "target": "value", "op": "==", "value": expected}]
                )
                success = [{"op": "put", "key": key, "value": new, "ttl": f"{ttl}ms"}]
                failure = [{"op": "get", "key": key}]

                def build(req: dict[str, Any] | None) -> bytes:
                    now = None if req is None else int(req["now_ms"])
                    return commands.txn(compare, success, failure, now_ms=now, request=req)
        elif call.f == "txn":
            compare, success, failure = value
            keys = sorted({str(item.get("key")) for part in value for item in part})
            history_value = [value, keys]
            success = [_ttl_item(x) for x in success]
            failure = [_ttl_item(x) for x in failure]

            def build(req: dict[str, Any] | None) -> bytes:
                now = None if req is None else int(req["now_ms"])
                return commands.txn(compare, success, failure, now_ms=now, request=req)
        elif call.f not in ("get", "list"):
            raise ValueError(f"unknown call {call.f!r}")
        p = self.w.params
        retries = p.write_retries if build is not None else 0
        # The history speaks the checker's names (read, write); the user's record keeps call.f.
        f = {"get": "read", "put": "write"}.get(call.f, call.f)
        op = _Op(process, f, key, history_value, build, self.w.queue.now + p.op_timeout_ms * (1 + retries))
        op.retries_left = retries
        op.request_id = self._new_request_id()
        op.call = call
        op.start_ms = self.w.queue.now
        return op

    def _answered(self, op: Op, node: Any, waiter: Waiter) -> None:
        if not isinstance(op, _Op) or op.call is None or op.f not in ("list", "cas", "txn"):
            super()._answered(op, node, waiter)
            return
        if op.closed or op.pending is None or op.pending[2] is not waiter:
            return
        if waiter.error is not None:
            super()._answered(op, node, waiter)  # retries, fails or marks unknown, as for any op
            return
        op.pending = None
        d: NodeDriver | None = node.driver
        if op.f == "list":
            assert d is not None
            rows = d.storage.scan(op.key, None, LIST_LIMIT)
            self._reply(op, "ok", {k: r.document() for k, r in rows})
            return
        result = waiter.result
        if not isinstance(result, dict) or "error" in result:
            raise RuntimeError(f"unexpected apply result for {op.f}: {result!r}")
        if result.get("duplicate"):
            self.stats["dup_suppressed"] += 1
        self.raw[id(op)] = result
        self._reply(op, "ok" if result.get("succeeded") else "fail", op.value)

    def _complete(self, op: Op, type_: str, value: Any) -> None:
        if op.closed:
            return
        if isinstance(op, _Op) and op.call is not None:
            raw = self.raw.pop(id(op), {})
            shown = value
            if op.f in ("read", "list"):
                result_value = value if type_ == "ok" else None
            elif op.f == "cas":
                result_value = _cas_current(raw)
            else:
                result_value = raw.get("succeeded") if raw else None
            result = Result(_STATUS[type_], result_value, raw)
            self.results[op.process] = result
            self.records.append(
                OpRecord(
                    self.names.get(op.process, op.process),
                    op.call.f,
                    op.key,
                    op.call.value,
                    op.call.ttl_ms,
                    op.start_ms,
                    self.w.queue.now,
                    result,
                )
            )
            value = shown
        super()._complete(op, type_, value)

    # ---------------------------------------------------------------- invariants and TTL

    def _check_state(self, node: Any, storage: Any) -> None:
        if self.state_invariant is None or self.w.phase == "formation":
            return
        rows = storage.items()
        if len(rows) > STATE_CHECK_MAX_KEYS:
            return
        state = {k: r.document() for k, r in rows if not k.startswith("__sim/")}
        why = self.state_invariant(state)
        if why is not None:
            raise SimFailure(
                "invariant", f"state_invariant on {node.id} at applied index {storage.applied_index}: {why}"
            )

    def start_expirer(self) -> None:
        self.w.queue.after(EXPIRE_EVERY_MS, self._expire)

    def _expire(self) -> None:
        """The production runtime's expirer, on the simulated clock: the leader proposes the
        deletion of keys whose stamped expiry has passed (the state machine re-checks it)."""
        w = self.w
        w.queue.after(EXPIRE_EVERY_MS, self._expire)
        for n in w.nodes:
            d = n.driver
            if d is None or d.core.role != LEADER or w.queue.now < n.busy_until:
                continue
            now = w.queue.now
            keys = d.storage.expired_keys(now, EXPIRE_BATCH)
            if keys:
                cmd = commands.expire(keys, now)

                def propose(drv: NodeDriver, cmd: bytes = cmd) -> Waiter:
                    return drv.propose(cmd)

                w.call(n, propose)


def _ttl_item(item: Any) -> Any:
    if isinstance(item, dict) and "ttl_ms" in item:
        out = {k: v for k, v in item.items() if k != "ttl_ms"}
        out["ttl"] = f"{int(item['ttl_ms'])}ms"
        return out
    return item


def _cas_current(raw: dict[str, Any]) -> Any:
    if "current" in raw:
        return raw["current"]
    results = raw.get("results") or []
    if results and isinstance(results[0], dict):
        return results[0].get("value")
    return None


# ------------------------------------------------------------------------------ running


def run_workload(
    wl: LoadedWorkload, p: Params, timeline_path: str | None = None, history_path: str | None = None
) -> Outcome:
    def make(world: Any) -> ProductWorkload:
        pw = ProductWorkload(world, wl)
        pw.start_expirer()
        return pw

    return run(p, None, False, history_path, timeline_path, make_workload=make, label=f"workload {wl.name} ")


def reproduce_line(wl: LoadedWorkload, p: Params) -> str:
    line = (
        f"REPRODUCE: python -m sim --workload {wl.path} --seed {p.seed} --nodes {p.nodes} "
        f"--faults {faults_text(p.faults)}"
    )
    if p.bug:
        line += f" --bug {p.bug}"
    extra = _storage_only(overrides(p))
    if p.clients != wl.clients:
        extra += ["--clients", str(p.clients)]
    if p.ops != wl.ops:
        extra += ["--ops", str(p.ops)]
    if extra:
        line += " " + " ".join(extra)
    return line


def _storage_only(flags: list[str]) -> list[str]:
    out = []
    for i in range(0, len(flags), 2):
        if flags[i] == "--storage":
            out += flags[i : i + 2]
    return out


def run_workload_cli(args: argparse.Namespace, faults: tuple[str, ...], kw: dict[str, Any], commit: str, out: TextIO) -> int:
    try:
        wl = load(args.workload)
    except ValueError as e:
        sys.stderr.write(f"python -m sim: error: {e}\n")
        return 2
    seeds = range(args.seed, args.seed + 1) if args.seed is not None else args.seeds
    directory = args.timeline or DEFAULT_TIMELINES
    out.write(
        f"sim workload={wl.path} seeds={seeds.start}..{seeds.stop - 1} clients={wl.clients} ops={wl.ops} "
        f"commit={commit}\n"
    )
    out.flush()
    first_failure: str | None = None
    failed = 0
    done = 0
    for seed in seeds:
        p = draw(
            seed,
            args.nodes,
            faults,
            args.bug,
            clients=kw.get("clients") or wl.clients,
            ops=kw.get("ops") or wl.ops,
            storage=kw.get("storage"),
        )
        outcome = run_workload(wl, p)
        done += 1
        if outcome.kind == "ok":
            out.write(f"seed {seed}: ok ({p.nodes} nodes, storage={p.storage}, {_counts(outcome.summary)})\n")
        else:
            failed += 1
            first_failure = first_failure or outcome.kind
            os.makedirs(directory, exist_ok=True)
            picture = os.path.join(directory, f"{wl.name}-seed{seed}.html")
            # The run is deterministic: replaying it with the recorder on draws the same run.
            run_workload(wl, p, timeline_path=picture)
            out.write(f"seed {seed}: FAILED ({outcome.kind}, exit {EXIT_BY_KIND[outcome.kind]})\n")
            for line in outcome.detail.splitlines()[:20]:
                out.write(f"  {line}\n")
            out.write(f"  timeline: {picture}\n")
            out.write(reproduce_line(wl, p) + "\n")
            if args.stop_on_failure:
                break
        out.flush()
    out.write(f"workload {wl.name}: {done} seeds, {failed} failed\n")
    out.flush()
    return EXIT_OK if first_failure is None else EXIT_BY_KIND[first_failure]


def _counts(summary: str) -> str:
    """The operation counts and the checker's verdict, from a run's summary line."""
    wanted = ("ops", "ok", "fail", "info", "crashes", "partitions", "history")
    fields = dict(tok.split("=", 1) for tok in summary.split() if "=" in tok)
    return " ".join(f"{k}={fields[k]}" for k in wanted if k in fields)
