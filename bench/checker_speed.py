"""How fast the checker decides a realistic history.

Generates a valid (linearizable) history from a simulated register store: 50 processes,
10 keys, 2,000 operations, each taking effect at a random instant between its invoke and
its completion; some completions are lost (info: the effect may or may not have happened),
cas and append ops that do not apply fail. Then times ``check_history`` on it, and on a
copy with one read corrupted (to time a violation with shrinking).

    .venv/bin/python bench/checker_speed.py [--ops 2000] [--processes 50] [--keys 10] [--seed 1]
"""

from __future__ import annotations

import argparse
import random
import time
from typing import Any

from beaver_vault.checker import check_history, parse_events


def generate(rng: random.Random, ops: int, processes: int, keys: int, info_rate: float = 0.03) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    store: dict[str, Any] = {}
    open_ops: dict[int, dict[str, Any]] = {}  # process -> op in flight
    idle = list(range(processes))
    started = 0
    serial = 0
    while started < ops or open_ops:
        choices = []
        if idle and started < ops:
            choices.append("invoke")
        if open_ops:
            choices += ["step", "step"]
        action = rng.choice(choices)
        if action == "invoke":
            p = idle.pop(rng.randrange(len(idle)))
            key = f"k{rng.randrange(keys)}"
            f = rng.choice(["read", "read", "write", "write", "cas", "delete", "append"] if key < "k5"
                           else ["read", "read", "append", "append", "read"])
            serial += 1
            value: Any = None
            if f == "write":
                value = serial
            elif f == "cas":
                value = [store.get(key) if rng.random() < 0.6 else rng.randrange(serial), serial]
            elif f == "append":
                value = serial
            op = {"process": p, "f": f, "key": key, "value": value, "done": False, "result": None}
            open_ops[p] = op
            events.append({"process": p, "type": "invoke", "f": f, "key": key, "value": value})
            started += 1
            continue
        p = rng.choice(sorted(open_ops))
        op = open_ops[p]
        if not op["done"] and rng.random() < info_rate / 2:
            op["type"] = "info"  # lost before it took effect: it never will
        elif not op["done"]:
            op["done"] = True  # the effect happens now, atomically
            cur = store.get(op["key"])
            f = op["f"]
            op["type"] = "ok"
            if f == "read":
                op["result"] = cur
            elif f == "write":
                store[op["key"]] = op["value"]
            elif f == "delete":
                store[op["key"]] = None
            elif f == "cas":
                if cur == op["value"][0]:
                    store[op["key"]] = op["value"][1]
                else:
                    op["type"] = "fail"
            elif f == "append":
                if cur is None or isinstance(cur, list):
                    store[op["key"]] = [*(cur or []), op["value"]]
                else:
                    op["type"] = "fail"
            if rng.random() < info_rate / 2:
                op["type"] = "info"  # took effect, but the client never heard
            continue
        del open_ops[p]
        idle.append(p)
        value = op["result"] if (op["f"] == "read" and op["type"] == "ok") else op["value"]
        events.append({"process": p, "type": op["type"], "f": op["f"], "key": op["key"], "value": value})
    return events


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--ops", type=int, default=2000)
    parser.add_argument("--processes", type=int, default=50)
    parser.add_argument("--keys", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--info-rate", type=float, default=0.03)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    events = generate(rng, args.ops, args.processes, args.keys, args.info_rate)
    history = parse_events(events)
    infos = sum(1 for op in history.ops if op.outcome == "info")
    print(f"history: {len(history.ops)} ops ({infos} info), {args.processes} processes, {args.keys} keys, seed {args.seed}")
    t0 = time.perf_counter()
    result = check_history(history)
    t1 = time.perf_counter()
    print(f"valid history: {result.verdict} in {t1 - t0:.2f} s ({result.steps} steps)")
    # Corrupt the last ok read of a register key that read a number: a stale or invented value.
    for i in range(len(events) - 1, -1, -1):
        e = events[i]
        if e["type"] == "ok" and e["f"] == "read" and isinstance(e["value"], int):
            events[i] = {**e, "value": -1}
            break
    t0 = time.perf_counter()
    bad = check_history(parse_events(events))
    t1 = time.perf_counter()
    print(f"corrupted history: {bad.verdict} in {t1 - t0:.2f} s ({bad.steps} steps): {bad.detail}")


if __name__ == "__main__":
    main()
