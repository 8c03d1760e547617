"""Where a single write's time goes: one client, sequential writes, a few cluster shapes.

    .venv/bin/python bench/latency_probe.py [--writes 300]

Runs, one after the other on this machine: a raw fsync loop (append 4 KiB + fsync, the
disk's own price), a SQLite WAL commit loop (the storage's price per Ready), then pipelined
writes from one client to a 1-node cluster (no replication: the leader's own fsync and the
path), a 3-node cluster at 50 ms ticks and at 10 ms ticks (if the p50 moved with the tick, a
write would be waiting for a tick somewhere), and the same 3-node cluster over HTTP. Prints
p50/p90 of each. Everything it starts, it stops (``tests/e2e_cluster.py``, by PID).
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from e2e_cluster import Cluster  # noqa: E402

from beaver_vault.client._pipelined import AsyncPipe  # noqa: E402
from beaver_vault.kv import commands  # noqa: E402
from beaver_vault.raft.messages import Entry, EntryKind, HardState  # noqa: E402
from beaver_vault.storage.sqlite import SQLiteStorage  # noqa: E402

VALUE = b'"' + b"v" * 98 + b'"'


def pct(samples: list[float]) -> str:
    s = sorted(samples)
    return f"p50 {1000 * statistics.median(s):6.2f} ms  p90 {1000 * s[int(0.9 * len(s))]:6.2f} ms"


def fsync_loop(n: int, where: Path) -> list[float]:
    fd = os.open(where / "fsync", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    out = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 4096)
            os.fsync(fd)
            out.append(time.perf_counter() - t0)
    finally:
        os.close(fd)
    return out


def sqlite_loop(n: int, where: Path) -> list[float]:
    s = SQLiteStorage(str(where / "probe.db"))
    s.reset("probe")
    out = []
    for i in range(1, n + 1):
        t0 = time.perf_counter()
        s.save(HardState(1, None, i), [Entry(1, i, EntryKind.NORMAL, commands.put(f"k{i}", "v" * 100))])
        out.append(time.perf_counter() - t0)
    return out


async def pipelined_writes(address: str, n: int) -> list[float]:
    pipe = await AsyncPipe.connect(address)
    out = []
    try:
        for i in range(n):
            t0 = time.perf_counter()
            header, _ = await pipe.request({"op": "put", "key": f"k{i % 1000}"}, VALUE)
            out.append(time.perf_counter() - t0)
            if header["status"] != 200:
                raise RuntimeError(header)
    finally:
        await pipe.aclose()
    return out


def http_writes(url: str, n: int) -> list[float]:
    out = []
    with httpx.Client() as c:
        for i in range(n):
            t0 = time.perf_counter()
            c.put(f"{url}/api/v1/kv/k{i % 1000}", content=VALUE).raise_for_status()
            out.append(time.perf_counter() - t0)
    return out


def cluster_run(root: Path, nodes: int, tick_ms: int, n: int, http: bool = False) -> list[float]:
    c = Cluster(root, extra_args=("--tick-ms", str(tick_ms), "--election-ticks", str(max(10, 500 // tick_ms))))
    try:
        leader = c.start_cluster(nodes) if nodes > 1 else c.start("node1")
        c.wait_leader()
        st = leader.status() or {}
        if http:
            return http_writes(leader.url, n)
        return trio.run(pipelined_writes, st["pipelined_address"], n)
    finally:
        c.close()


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=300)
    args = ap.parse_args()
    n = args.writes
    tmp = Path(tempfile.mkdtemp(prefix="latency-probe-"))
    try:
        print(f"raw append+fsync (4 KiB)             {pct(fsync_loop(n, tmp))}", flush=True)
        print(f"SQLite save of one entry (WAL FULL)  {pct(sqlite_loop(n, tmp))}", flush=True)
        print(f"1 node, pipelined, 50 ms ticks       {pct(cluster_run(tmp / 'a', 1, 50, n))}", flush=True)
        print(f"3 nodes, pipelined, 50 ms ticks      {pct(cluster_run(tmp / 'b', 3, 50, n))}", flush=True)
        print(f"3 nodes, pipelined, 10 ms ticks      {pct(cluster_run(tmp / 'c', 3, 10, n))}", flush=True)
        print(f"3 nodes, HTTP (httpx), 50 ms ticks   {pct(cluster_run(tmp / 'd', 3, 50, n, http=True))}", flush=True)
        print(f"raw append+fsync again               {pct(fsync_loop(n, tmp))}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
