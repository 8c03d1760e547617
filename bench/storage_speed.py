"""Storage speed: SQLite saves/s (1 and 100 entries per save) and apply rows/s.

    .venv/bin/python bench/storage_speed.py [--seconds 3] [--dir /tmp]

Each save is one fsynced transaction (WAL, synchronous=FULL), as the node driver does once
per Ready; entries carry a 100-byte JSON put. Apply runs the real kv state machine over
batches of 100 committed entries (one transaction each). The in-memory storage is shown
for reference. Not a test: it prints figures.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from beaver_vault.kv import commands
from beaver_vault.kv.state import KVStore, apply
from beaver_vault.raft.messages import Entry, HardState
from beaver_vault.storage.memory import MemoryStorage
from beaver_vault.storage.sqlite import SQLiteStorage

VALUE = "x" * 90  # about 100 bytes of JSON per value


def _entries(first: int, n: int, term: int = 1) -> list[Entry]:
    return [Entry(term, i, data=commands.put(f"key{i % 1000:04d}", {"v": VALUE})) for i in range(first, first + n)]


def bench_saves(storage: Any, per_save: int, seconds: float) -> tuple[float, float, list[float]]:
    """Returns saves/s, entries/s and the per-save latencies (ms); only ``save`` is timed."""
    last = len(storage.load().entries)
    lat: list[float] = []
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        batch = _entries(last + 1, per_save)  # built outside the timed region
        s = time.perf_counter()
        storage.save(HardState(1, "n1", last), batch)
        lat.append(time.perf_counter() - s)
        last += per_save
    busy = sum(lat)
    return len(lat) / busy, len(lat) * per_save / busy, [x * 1000 for x in lat]


def bench_apply(storage: Any, batch: int, seconds: float) -> float:
    """Rows/s applied through kv.state.apply, ``batch`` entries per transaction."""
    fn: Callable[[KVStore, Entry], dict[str, Any]] = lambda store, e: apply(store, e.index, e.data)  # noqa: E731
    entries = storage.load().entries
    applied = storage.load().applied_index
    n = 0
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds and applied < len(entries):
        todo = entries[applied : applied + batch]
        storage.apply(todo, fn)
        applied += len(todo)
        n += len(todo)
    return n / (time.perf_counter() - t0)


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))] if xs else 0.0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0, help="per measurement (default 3)")
    ap.add_argument("--dir", default=None, help="where to put the database (default: a temp dir)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        for name, make in (
            ("sqlite", lambda tag: SQLiteStorage(Path(d) / f"{tag}.db")),
            ("memory", lambda tag: MemoryStorage()),
        ):
            for per_save in (1, 100):
                s = make(f"save{per_save}")
                saves, ents, lat = bench_saves(s, per_save, args.seconds)
                print(
                    f"{name:6} save  {per_save:3} entry/save: {saves:9.0f} saves/s {ents:10.0f} entries/s"
                    f"  p50 {pct(lat, 50):.3f} ms  p99 {pct(lat, 99):.3f} ms"
                )
                if per_save == 100:
                    rows = bench_apply(s, 100, args.seconds)
                    print(f"{name:6} apply 100 entry/txn : {rows:10.0f} rows/s")
                    one = bench_apply(s, 1, args.seconds)
                    print(f"{name:6} apply   1 entry/txn : {one:10.0f} rows/s")
                s.close()


if __name__ == "__main__":
    main()
