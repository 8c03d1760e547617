"""Where an apply's time goes: each SQL statement of ``SQLiteStorage.apply`` timed, per entry.

    .venv/bin/python bench/apply_cost.py [--batch 24] [--entries 8000] [--plain] [--random-ids]

Applies batches of puts of 100-byte values (1,000 keys) through the real state machine on a
fresh database, as a node's storage thread does, and prints the time per entry in all and per
kind of statement (the rest is Python: decoding the command, the result, the bookkeeping).
By default every put is idempotent, as the Python client's are (one client name, keys that
count up); ``--random-ids`` uses random keys instead, ``--plain`` none. The first quarter of
the entries warms up. Not a test: it prints figures; run it a few times on a shared machine.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from beaver_vault.kv import commands
from beaver_vault.node.effects import _apply_entry
from beaver_vault.raft.messages import Entry, HardState
from beaver_vault.storage.sqlite import SQLiteStorage


class _TimedConnection:
    """Stands in for the storage's connection: times every ``execute`` by its statement."""

    def __init__(self, db: Any, times: dict[str, float], counts: collections.Counter[str]) -> None:
        self._db = db
        self._times = times
        self._counts = counts

    def execute(self, sql: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return self._db.execute(sql, *args)
        finally:
            what = " ".join(sql.split()[:4])
            self._times[what] += time.perf_counter() - started
            self._counts[what] += 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._db, name)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=24, help="entries per apply (one transaction)")
    ap.add_argument("--entries", type=int, default=8000)
    ap.add_argument("--plain", action="store_true", help="puts without an idempotency key")
    ap.add_argument("--random-ids", action="store_true", help="random idempotency keys")
    args = ap.parse_args()
    client = uuid.uuid4().hex
    n = args.entries - args.entries % args.batch
    warm = (n // 4) - (n // 4) % args.batch

    def command(i: int) -> bytes:
        request = None
        if not args.plain:
            rid = uuid.uuid4().hex if args.random_ids else f"{i:012x}"
            request = {"client": client, "id": rid, "now_ms": 1_000_000 + i}
        return commands.put(f"k{(i * 7919) % 1000}", {"v": "x" * 92}, request=request)

    with tempfile.TemporaryDirectory() as tmp:
        storage = SQLiteStorage(Path(tmp) / "db.sqlite")
        storage.reset("bench")
        entries = [Entry(1, i, data=command(i)) for i in range(1, n + 1)]
        storage.save(HardState(1, None, 0), entries)
        times: dict[str, float] = collections.defaultdict(float)
        counts: collections.Counter[str] = collections.Counter()
        real = storage._db
        storage._db = _TimedConnection(real, times, counts)  # type: ignore[assignment]
        started = time.perf_counter()
        for lo in range(0, n, args.batch):
            if lo == warm:
                times.clear()
                counts.clear()
                started = time.perf_counter()
            storage.apply(entries[lo : lo + args.batch], _apply_entry)
        total = time.perf_counter() - started
        storage._db = real
        storage.close()
    measured = n - warm
    kind = "plain" if args.plain else ("random keys" if args.random_ids else "keys that count up")
    print(f"{kind}, {args.batch} entries per apply: {total / measured * 1e6:.1f} us per entry in all")
    sql = 0.0
    for what, spent in sorted(times.items(), key=lambda kv: -kv[1]):
        sql += spent
        print(f"  {spent / measured * 1e6:7.1f} us/entry  {counts[what] / measured:5.2f}/entry  {what}")
    print(f"  {(total - sql) / measured * 1e6:7.1f} us/entry  Python (the rest)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
