"""Clients, the operations they send, and the history they record.

Every client is a thread with its own process id, its own seeded ``random.Random`` and its own
``httpx.Client``. A client has node affinity, as real clients do: it sends every operation to
its own node (process p starts on member p mod n) and moves on to the next member only when
its node stops answering (no HTTP answer at all, or three non-ok completions in a row), so a
paused or cut-off node does not soon hold every client. Each history line carries the extra
field ``node`` (the node the request went to). Every second client (``--pipelined-every``)
talks the pipelined protocol (``pipelined.py``) instead of HTTP, where the node offers it,
with the same outcome rules. Every third client sends an ``Idempotency-Key``
with its writes and, when the outcome is unknown, retries the same request (same key) up to
twice on its next node: one operation in the history, ``ok`` if any attempt was, else ``info``
(a retry refused ``not_applied`` says nothing about the first attempt). The recorder writes an
``invoke`` line BEFORE the request leaves and the completion line AFTER the answer is in, under
one lock, so the order of lines is a real-time order the checker may rely on.

Keys: ``keys`` slots; slot j holds a register (read, write, cas, delete) or, every third slot,
a list (append, read, delete). A key is retired after ``ops_per_key`` invocations and its slot
gets a fresh name, which keeps every key's sub-history small enough to check exhaustively.
Written values are unique integers, which also keeps the search small.

Operations on the wire:
* read: ``GET /kv/<k>`` (linearizable by default); 404 -> null.
* write: ``PUT /kv/<k>`` with the value. delete: ``DELETE /kv/<k>``.
* cas [e, n]: ``POST /txn`` compare value == e (``exists == false`` when e is null), success
  put n. A compare that did not hold -> fail.
* append v: first a read (``GET ?meta=true``: value and mod_revision R), recorded as a read
  of its own; then, as the append operation, ``POST /txn`` compare mod_revision == R, success
  put old + [v]. The compare makes the put equal to appending v at the transaction's commit
  point (the value cannot have changed while mod_revision stayed R), so the operation is
  linearizable; a compare that did not hold -> fail (nothing written). If the read fails, no
  append is invoked.
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from jepsen_like.outcome import INFO, OK, Completion, Exchange, classify
from jepsen_like.pipelined import Pipelined

KV = "/api/v1/kv/"
TXN = "/api/v1/txn"


class Recorder:
    """Appends history events (JSON Lines) to a file, in the order they happened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: IO[str] = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._t0 = time.monotonic_ns()
        self.t0_s = self._t0 / 1e9  # the time origin, on time.monotonic()'s scale
        self.counts: dict[tuple[str, str], int] = {}

    def event(self, process: int, type_: str, f: str, key: str, value: Any, node: str | None = None) -> None:
        with self._lock:
            line = {
                "process": process,
                "type": type_,
                "f": f,
                "key": key,
                "value": value,
                "time": time.monotonic_ns() - self._t0,
            }
            if node is not None:
                line["node"] = node
            self._out.write(json.dumps(line, separators=(",", ":")) + "\n")
            if type_ != "invoke":
                self.counts[(f, type_)] = self.counts.get((f, type_), 0) + 1

    def close(self) -> None:
        with self._lock:
            self._out.close()


@dataclass
class Slot:
    kind: str  # "register" | "list"
    name: str
    invoked: int = 0
    known: list[Any] = field(default_factory=list)  # recent values seen or written (cas targets)


class Keys:
    """The active key of every slot, rotated after ``ops_per_key`` invocations."""

    def __init__(self, n: int, ops_per_key: int, lists: bool) -> None:
        self.ops_per_key = ops_per_key
        self.gen = itertools.count(1)
        self.slots: list[Slot] = []
        self.used: list[str] = []
        self._lock = threading.Lock()
        for j in range(n):
            kind = "list" if lists and j % 3 == 2 else "register"
            self.slots.append(self._fresh(kind))

    def _fresh(self, kind: str) -> Slot:
        name = f"{'l' if kind == 'list' else 'r'}{next(self.gen)}"
        self.used.append(name)
        return Slot(kind, name)

    def take(self, rng: random.Random) -> Slot:
        with self._lock:
            j = rng.randrange(len(self.slots))
            slot = self.slots[j]
            slot.invoked += 1
            if slot.invoked >= self.ops_per_key:
                self.slots[j] = self._fresh(slot.kind)
            return slot

    def note(self, slot: Slot, value: Any) -> None:
        with self._lock:
            slot.known.append(value)
            del slot.known[:-4]


class Values:
    """Unique integers for writes, cas targets and appends."""

    def __init__(self) -> None:
        self._next = itertools.count(1)
        self._lock = threading.Lock()

    def new(self) -> int:
        with self._lock:
            return next(self._next)


def exchange(
    client: httpx.Client, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None
) -> Exchange:
    """Send one request; a transport error becomes an Exchange with status None."""
    sent = dict(headers or {})
    try:
        if body is None:
            resp = client.request(method, url, headers=sent)
        else:
            sent["Content-Type"] = "application/json"
            resp = client.request(method, url, content=json.dumps(body), headers=sent)
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        return Exchange(None, error=type(e).__name__, connect_failed=True)
    except httpx.HTTPError as e:
        return Exchange(None, error=type(e).__name__)
    return Exchange(resp.status_code, resp.text)


def kv_url(base: str, key: str, meta: bool = False) -> str:
    return base + KV + key + ("?meta=true" if meta else "")


class ClientState:
    """One client's connection, affinity and idempotency settings."""

    MOVE_AFTER_BAD = 3  # non-ok completions in a row before moving to the next node

    def __init__(
        self, process: int, seed: int, http: httpx.Client, idempotent: bool, pipe: Pipelined | None = None
    ) -> None:
        self.process = process
        self.pipe = pipe  # the pipelined protocol where the node offers it (else HTTP)
        self.rng = random.Random(f"{seed}:client:{process}")
        self.http = http
        self.idempotent = idempotent
        self.node: str | None = None
        self.url = ""
        self.bad = 0  # non-ok completions in a row on this node
        self.streak = 0  # non-ok completions in a row on any node (pacing)
        self.moves = 0
        self._ids = itertools.count(1)

    def pick(self, members: list[tuple[str, str]]) -> None:
        """Stay on our node while it is a member; else the next one in member order."""
        if not members:
            raise RuntimeError("no members to talk to")
        ids = [m[0] for m in members]
        if self.node in ids:
            i = ids.index(self.node)
            self.url = members[i][1]
            return
        self.node, self.url = members[self.process % len(members)]

    def move_on(self, members: list[tuple[str, str]]) -> None:
        ids = [m[0] for m in members]
        i = ids.index(self.node) if self.node in ids else self.process
        self.node, self.url = members[(i + 1) % len(members)]
        self.bad = 0
        self.moves += 1

    def exchange(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Exchange:
        if self.pipe is not None:
            ex = self.pipe.exchange(self.url, method, url, body, headers or {})
            if ex is not None:
                return ex
        return exchange(self.http, method, url, body, headers)

    def idempotency_headers(self) -> dict[str, str]:
        if not self.idempotent:
            return {}
        return {"Idempotency-Key": f"p{self.process}-{next(self._ids)}", "X-Beaver-Vault-Client": f"jl-{self.process}"}


@dataclass
class Workload:
    recorder: Recorder
    keys: Keys
    values: Values
    urls: Callable[[], list[tuple[str, str]]]  # (node id, base URL) of every member
    timeout_s: float
    appends: bool
    info_log: Callable[[str], None] | None = None
    retries: int = 2  # extra attempts of an idempotent write whose outcome is unknown

    def run_op(self, c: ClientState) -> None:
        c.pick(self.urls())
        slot = self.keys.take(c.rng)
        rng = c.rng
        if slot.kind == "list":
            roll = rng.random()
            if roll < 0.55 and self.appends:
                self.append(c, slot)
            elif roll < 0.95:
                self.read(c, slot)
            else:
                self.delete(c, slot)
            return
        roll = rng.random()
        if roll < 0.35:
            self.read(c, slot)
        elif roll < 0.6:
            self.write(c, slot)
        elif roll < 0.88:
            known = slot.known
            if known and rng.random() < 0.8:
                expected = known[-1] if rng.random() < 0.6 else rng.choice(known)
            else:
                expected = None if rng.random() < 0.5 else self.values.new()
            self.cas(c, slot, expected, self.values.new())
        else:
            self.delete(c, slot)

    def _send(
        self, c: ClientState, f: str, key: str, invoked: Any, method: str, path: str, body: Any = None, write: bool = True
    ) -> Completion:
        """One operation's request(s): retried with the same idempotency key while unknown."""
        headers = c.idempotency_headers() if write else {}
        attempts = 1 + (self.retries if headers else 0)
        first: Completion | None = None
        for _ in range(attempts):
            ex = c.exchange(method, c.url + path, body, headers)
            comp = classify(f, key, invoked, ex)
            c.bad = 0 if comp.type == OK else c.bad + 1
            c.streak = 0 if comp.type == OK else c.streak + 1
            if ex.status is None or c.bad >= ClientState.MOVE_AFTER_BAD:
                c.move_on(self.urls())
            if comp.type == OK:
                return comp
            if first is None:
                first = comp
            if first.type != INFO:
                return first  # certainly not applied: nothing to retry
        assert first is not None
        return first  # unknown, and no retry came back ok

    def _done(self, c: ClientState, f: str, slot: Slot, comp: Completion) -> Completion:
        self.recorder.event(c.process, comp.type, f, slot.name, comp.value, c.node)
        if comp.type == INFO and self.info_log is not None:
            self.info_log(f"p{c.process} {f} {slot.name} on {c.node}: info ({comp.reason})")
        return comp

    def read(self, c: ClientState, slot: Slot) -> Completion:
        self.recorder.event(c.process, "invoke", "read", slot.name, None, c.node)
        comp = self._send(c, "read", slot.name, None, "GET", KV + slot.name, write=False)
        if comp.type == OK and comp.value is not None and slot.kind == "register":
            self.keys.note(slot, comp.value)
        return self._done(c, "read", slot, comp)

    def write(self, c: ClientState, slot: Slot) -> None:
        value = self.values.new()
        self.recorder.event(c.process, "invoke", "write", slot.name, value, c.node)
        comp = self._send(c, "write", slot.name, value, "PUT", KV + slot.name, value)
        if comp.type != "fail":
            self.keys.note(slot, value)
        self._done(c, "write", slot, comp)

    def delete(self, c: ClientState, slot: Slot) -> None:
        self.recorder.event(c.process, "invoke", "delete", slot.name, None, c.node)
        comp = self._send(c, "delete", slot.name, None, "DELETE", KV + slot.name)
        self._done(c, "delete", slot, comp)

    def cas(self, c: ClientState, slot: Slot, expected: Any, new: Any) -> None:
        pair = [expected, new]
        if expected is None:
            compare = {"key": slot.name, "target": "exists", "op": "==", "value": False}
        else:
            compare = {"key": slot.name, "target": "value", "op": "==", "value": expected}
        body = {"compare": [compare], "success": [{"op": "put", "key": slot.name, "value": new}], "failure": []}
        self.recorder.event(c.process, "invoke", "cas", slot.name, pair, c.node)
        comp = self._send(c, "cas", slot.name, pair, "POST", TXN, body)
        if comp.type != "fail":
            self.keys.note(slot, new)
        self._done(c, "cas", slot, comp)

    def append(self, c: ClientState, slot: Slot) -> None:
        # The read half: its own operation in the history.
        self.recorder.event(c.process, "invoke", "read", slot.name, None, c.node)
        ex = c.exchange("GET", kv_url(c.url, slot.name, meta=True))
        revision = 0
        current: Any = None
        if ex.status == 200:
            try:
                meta = json.loads(ex.body)
                current, revision = meta["value"], int(meta["mod_revision"])
            except (ValueError, KeyError, TypeError):
                ex = Exchange(None, error="unreadable meta body")
        comp = classify("read", slot.name, None, ex if ex.status != 200 else Exchange(200, json.dumps(current)))
        if ex.status is None:
            c.move_on(self.urls())
        self._done(c, "read", slot, comp)
        if comp.type != OK or not (comp.value is None or isinstance(comp.value, list)):
            return  # nothing to append to: no append invoked
        element = self.values.new()
        new_list = ([] if current is None else list(current)) + [element]
        body = {
            "compare": [{"key": slot.name, "target": "mod_revision", "op": "==", "value": revision}],
            "success": [{"op": "put", "key": slot.name, "value": new_list}],
            "failure": [],
        }
        self.recorder.event(c.process, "invoke", "append", slot.name, element, c.node)
        comp = self._send(c, "append", slot.name, element, "POST", TXN, body)
        self._done(c, "append", slot, comp)


def client_loop(
    workload: Workload,
    process: int,
    seed: int,
    stop_at: float,
    stop: threading.Event,
    idempotent: bool = False,
    pipelined: bool = False,
) -> ClientState:
    with httpx.Client(timeout=httpx.Timeout(workload.timeout_s)) as http:
        pipe = Pipelined(http, workload.timeout_s) if pipelined else None
        c = ClientState(process, seed, http, idempotent, pipe)
        try:
            while not stop.is_set() and time.monotonic() < stop_at:
                workload.run_op(c)
                if c.streak:  # pace a client whose nodes refuse or time out, as a real client would
                    stop.wait(min(0.05 * c.streak, 0.25))
        finally:
            if pipe is not None:
                pipe.close()
        return c


def final_reads(workload: Workload, first_process: int, attempts: int = 5) -> tuple[int, list[str]]:
    """Read every key ever used, after healing; each attempt is its own history operation.

    Returns (keys read ok, keys never read ok). A fresh process per key; it moves on to the
    next member when one does not answer."""
    unread: list[str] = []
    good = 0
    with httpx.Client(timeout=httpx.Timeout(workload.timeout_s)) as http:
        process = first_process
        for name in list(workload.keys.used):
            slot = Slot("list" if name.startswith("l") else "register", name)
            ok = False
            for _ in range(attempts):
                c = ClientState(process, 0, http, idempotent=False)
                c.pick(workload.urls())
                comp = workload.read(c, slot)
                process += 1  # a fresh process id after every read, as Jepsen does after an unclear one
                if comp.type == OK:
                    ok = True
                    break
                time.sleep(0.2)
            if ok:
                good += 1
            else:
                unread.append(name)
    return good, unread
