"""Clients, the operations they send, and the history they record.

Every client is a thread with its own process id, its own seeded ``random.Random`` and its own
``httpx.Client``; it picks a node at random for each operation. The recorder writes an
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

KV = "/api/v1/kv/"
TXN = "/api/v1/txn"


class Recorder:
    """Appends history events (JSON Lines) to a file, in the order they happened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._out: IO[str] = path.open("w", encoding="utf-8")
        self._lock = threading.Lock()
        self._t0 = time.monotonic_ns()
        self.counts: dict[tuple[str, str], int] = {}

    def event(self, process: int, type_: str, f: str, key: str, value: Any) -> None:
        with self._lock:
            line = {
                "process": process,
                "type": type_,
                "f": f,
                "key": key,
                "value": value,
                "time": time.monotonic_ns() - self._t0,
            }
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


def exchange(client: httpx.Client, method: str, url: str, body: Any = None) -> Exchange:
    """Send one request; a transport error becomes an Exchange with status None."""
    try:
        if body is None:
            resp = client.request(method, url)
        else:
            resp = client.request(method, url, content=json.dumps(body), headers={"Content-Type": "application/json"})
    except (httpx.ConnectError, httpx.ConnectTimeout) as e:
        return Exchange(None, error=type(e).__name__, connect_failed=True)
    except httpx.HTTPError as e:
        return Exchange(None, error=type(e).__name__)
    return Exchange(resp.status_code, resp.text)


def kv_url(base: str, key: str, meta: bool = False) -> str:
    return base + KV + key + ("?meta=true" if meta else "")


@dataclass
class Workload:
    recorder: Recorder
    keys: Keys
    values: Values
    urls: Callable[[], list[str]]  # every node's base URL (the client picks one)
    timeout_s: float
    appends: bool
    info_log: Callable[[str], None] | None = None

    def run_op(self, process: int, rng: random.Random, client: httpx.Client) -> None:
        slot = self.keys.take(rng)
        base = rng.choice(self.urls())
        if slot.kind == "list":
            roll = rng.random()
            if roll < 0.55 and self.appends:
                self.append(process, slot, base, client)
            elif roll < 0.95:
                self.read(process, slot, base, client)
            else:
                self.delete(process, slot, base, client)
            return
        roll = rng.random()
        if roll < 0.35:
            self.read(process, slot, base, client)
        elif roll < 0.6:
            self.write(process, slot, base, client)
        elif roll < 0.88:
            known = slot.known
            if known and rng.random() < 0.8:
                expected = known[-1] if rng.random() < 0.6 else rng.choice(known)
            else:
                expected = None if rng.random() < 0.5 else self.values.new()
            self.cas(process, slot, base, client, expected, self.values.new())
        else:
            self.delete(process, slot, base, client)

    def _done(self, process: int, f: str, slot: Slot, c: Completion) -> Completion:
        self.recorder.event(process, c.type, f, slot.name, c.value)
        if c.type == INFO and self.info_log is not None:
            self.info_log(f"p{process} {f} {slot.name}: info ({c.reason})")
        return c

    def read(self, process: int, slot: Slot, base: str, client: httpx.Client) -> Completion:
        self.recorder.event(process, "invoke", "read", slot.name, None)
        c = classify("read", slot.name, None, exchange(client, "GET", kv_url(base, slot.name)))
        if c.type == OK and c.value is not None and slot.kind == "register":
            self.keys.note(slot, c.value)
        return self._done(process, "read", slot, c)

    def write(self, process: int, slot: Slot, base: str, client: httpx.Client) -> None:
        value = self.values.new()
        self.recorder.event(process, "invoke", "write", slot.name, value)
        c = classify("write", slot.name, value, exchange(client, "PUT", kv_url(base, slot.name), value))
        if c.type != "fail":
            self.keys.note(slot, value)
        self._done(process, "write", slot, c)

    def delete(self, process: int, slot: Slot, base: str, client: httpx.Client) -> None:
        self.recorder.event(process, "invoke", "delete", slot.name, None)
        c = classify("delete", slot.name, None, exchange(client, "DELETE", kv_url(base, slot.name)))
        self._done(process, "delete", slot, c)

    def cas(self, process: int, slot: Slot, base: str, client: httpx.Client, expected: Any, new: Any) -> None:
        pair = [expected, new]
        if expected is None:
            compare = {"key": slot.name, "target": "exists", "op": "==", "value": False}
        else:
            compare = {"key": slot.name, "target": "value", "op": "==", "value": expected}
        body = {"compare": [compare], "success": [{"op": "put", "key": slot.name, "value": new}], "failure": []}
        self.recorder.event(process, "invoke", "cas", slot.name, pair)
        c = classify("cas", slot.name, pair, exchange(client, "POST", base + TXN, body))
        if c.type != "fail":
            self.keys.note(slot, new)
        self._done(process, "cas", slot, c)

    def append(self, process: int, slot: Slot, base: str, client: httpx.Client) -> None:
        # The read half: its own operation in the history.
        self.recorder.event(process, "invoke", "read", slot.name, None)
        ex = exchange(client, "GET", kv_url(base, slot.name, meta=True))
        revision = 0
        current: Any = None
        if ex.status == 200:
            try:
                meta = json.loads(ex.body)
                current, revision = meta["value"], int(meta["mod_revision"])
            except (ValueError, KeyError, TypeError):
                ex = Exchange(None, error="unreadable meta body")
        c = classify("read", slot.name, None, ex if ex.status != 200 else Exchange(200, json.dumps(current)))
        self._done(process, "read", slot, c)
        if c.type != OK or not (c.value is None or isinstance(c.value, list)):
            return  # nothing to append to: no append invoked
        element = self.values.new()
        new_list = ([] if current is None else list(current)) + [element]
        body = {
            "compare": [{"key": slot.name, "target": "mod_revision", "op": "==", "value": revision}],
            "success": [{"op": "put", "key": slot.name, "value": new_list}],
            "failure": [],
        }
        self.recorder.event(process, "invoke", "append", slot.name, element)
        c = classify("append", slot.name, element, exchange(client, "POST", base + TXN, body))
        self._done(process, "append", slot, c)


def client_loop(
    workload: Workload, process: int, seed: int, stop_at: float, stop: threading.Event
) -> None:
    rng = random.Random(f"{seed}:client:{process}")
    with httpx.Client(timeout=httpx.Timeout(workload.timeout_s)) as client:
        while not stop.is_set() and time.monotonic() < stop_at:
            workload.run_op(process, rng, client)


def final_reads(workload: Workload, first_process: int, attempts: int = 5) -> tuple[int, list[str]]:
    """Read every key ever used, after healing; each attempt is its own history operation.

    Returns (keys read ok, keys never read ok). Reads go to random nodes until one answers."""
    rng = random.Random(f"final:{first_process}")
    unread: list[str] = []
    good = 0
    with httpx.Client(timeout=httpx.Timeout(workload.timeout_s)) as client:
        process = first_process
        for name in list(workload.keys.used):
            slot = Slot("list" if name.startswith("l") else "register", name)
            ok = False
            for _ in range(attempts):
                c = workload.read(process, slot, rng.choice(workload.urls()), client)
                if c.type == OK:
                    ok = True
                    break
                process += 1  # a fresh process id after an unclear read, as Jepsen does
                time.sleep(0.2)
            if ok:
                good += 1
            else:
                unread.append(name)
    return good, unread
