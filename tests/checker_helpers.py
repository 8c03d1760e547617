"""Builders shared by the checker tests (test_checker.py, test_checker_input.py): little
history builders, the brute-force reference checker, and random histories of a correct store
and their mutations."""

from __future__ import annotations

import json
import random
from typing import Any

from beaver_vault.checker import Op, check_history

Event = dict[str, Any]


# --- little history builders --------------------------------------------------------------


def inv(p: int, f: str, key: str, value: Any = None) -> Event:
    return {"process": p, "type": "invoke", "f": f, "key": key, "value": value}


def done(p: int, kind: str, f: str, key: str, value: Any = None) -> Event:
    return {"process": p, "type": kind, "f": f, "key": key, "value": value}


def op(p: int, f: str, key: str, value: Any = None, kind: str = "ok", result: Any = None) -> list[Event]:
    """A sequential (invoke then complete) operation."""
    return [inv(p, f, key, value), done(p, kind, f, key, result if f == "read" else value)]


def verdict(events: list[Event], **kw: Any) -> str:
    return check_history(events, **kw).verdict


# --- the brute-force reference ---------------------------------------------------------------


def _canon(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def brute_force(ops: tuple[Op, ...]) -> bool:
    """Is there a subset of the info ops and a total order of it plus every ok op that
    respects real time and the register semantics? Exhaustive; for tiny histories only."""
    live = [o for o in ops if o.outcome in ("ok", "info")]

    def before(a: Op, b: Op) -> bool:
        return a.outcome == "ok" and a.complete_index is not None and a.complete_index < b.invoke_index

    def apply(o: Op, state: dict[str, Any]) -> dict[str, Any] | None:
        cur = state.get(o.key)
        if o.f == "read":
            if o.outcome != "ok":
                return state
            return state if _canon(cur) == _canon(o.result) else None
        if o.f == "write":
            return {**state, o.key: o.value}
        if o.f == "delete":
            return {**state, o.key: None}
        if o.f == "cas":
            expected, new = o.value
            return {**state, o.key: new} if _canon(cur) == _canon(expected) else None
        if cur is None:
            return {**state, o.key: [o.value]}
        if isinstance(cur, list):
            return {**state, o.key: [*cur, o.value]}
        return None

    def search(remaining: list[Op], state: dict[str, Any]) -> bool:
        if all(o.outcome != "ok" for o in remaining):
            return True
        for o in remaining:
            if any(before(other, o) for other in remaining if other is not o):
                continue
            after = apply(o, state)
            if after is not None and search([r for r in remaining if r is not o], after):
                return True
        return False

    return search(live, {})


# --- random histories -------------------------------------------------------------------------


DEFAULT_FS = ("read", "read", "write", "cas", "delete", "append", "append")


def simulate(
    rng: random.Random,
    n_ops: int,
    n_procs: int,
    keys: list[str],
    info_rate: float = 0.15,
    fs: tuple[str, ...] = DEFAULT_FS,
    unique_values: bool = False,
) -> list[Event]:
    """A history of a correct (atomic) store with random concurrency: each operation takes
    effect at one instant between its invoke and completion; some outcomes are lost (info).
    ``fs``: the operations to draw from (repeat one to draw it more often); ``unique_values``:
    every write and append carries a value of its own (as the simulator's clients do)."""
    events: list[Event] = []
    store: dict[str, Any] = {}
    open_ops: dict[int, dict[str, Any]] = {}
    idle = list(range(n_procs))
    started = 0
    while (started < n_ops and idle) or open_ops:
        if idle and started < n_ops and (not open_ops or rng.random() < 0.4):
            p = idle.pop(rng.randrange(len(idle)))
            key = rng.choice(keys)
            f = rng.choice(fs)
            value: Any = None
            if f in ("write", "append"):
                value = started if unique_values else rng.choice([started, True, 1, "s", {"n": started}])
            elif f == "cas":
                value = [store.get(key) if rng.random() < 0.7 else 1, started]
            open_ops[p] = {"f": f, "key": key, "value": value, "type": None, "result": None}
            events.append(inv(p, f, key, value))
            started += 1
            continue
        p = rng.choice(sorted(open_ops))
        o = open_ops[p]
        if o["type"] is None:
            if rng.random() < info_rate / 2:
                o["type"] = "info"  # lost before taking effect: never happens
            else:
                cur = store.get(o["key"])
                o["type"] = "ok"
                if o["f"] == "read":
                    o["result"] = cur
                elif o["f"] == "write":
                    store[o["key"]] = o["value"]
                elif o["f"] == "delete":
                    store[o["key"]] = None
                elif o["f"] == "cas":
                    if _canon(cur) == _canon(o["value"][0]):
                        store[o["key"]] = o["value"][1]
                    else:
                        o["type"] = "fail"
                elif cur is None or isinstance(cur, list):
                    store[o["key"]] = [*(cur or []), o["value"]]
                else:
                    o["type"] = "fail"
                if rng.random() < info_rate / 2:
                    o["type"] = "info"  # happened, but the client never heard
                continue
        del open_ops[p]
        if rng.random() < 0.05 and o["type"] == "info":
            continue  # never completed (counts as info); the process stays blocked
        idle.append(p)
        result = o["result"] if o["f"] == "read" and o["type"] == "ok" else o["value"]
        events.append(done(p, o["type"], o["f"], o["key"], result))
    return events


def mutate(rng: random.Random, events: list[Event]) -> list[Event]:
    """Change one ok read's result, or turn one fail into ok: often, not always, a violation."""
    targets = [i for i, e in enumerate(events) if e["type"] in ("ok", "fail") and e["f"] in ("read", "cas")]
    if not targets:
        return events
    i = rng.choice(targets)
    e = dict(events[i])
    if e["f"] == "read":
        e["value"] = rng.choice([None, 1, True, [1], [True, 1], "s", 0])
    else:
        e["type"] = "ok" if e["type"] == "fail" else "fail"
    return [*events[:i], e, *events[i + 1 :]]


def hard_key(key: str, width: int = 7) -> list[Event]:
    """Concurrent writes, then a read that only the last possible order explains."""
    events = [inv(p, "write", key, p) for p in range(width)]
    events += [done(p, "ok", "write", key, p) for p in range(width)]
    events += [inv(100, "read", key), done(100, "ok", "read", key, 0)]
    events += [inv(101, "read", key), done(101, "ok", "read", key, 1)]  # 0 then 1: impossible
    return events
