"""Where one write's time goes, stage by stage, from the nodes' own trace (``node/trace.py``).

    .venv/bin/python bench/trace_write.py [--writes 300] [--tick-ms 50]
    .venv/bin/python bench/trace_write.py --tasks 64 [--seconds 3]

Starts a 3-node cluster (``tests/e2e_cluster.py``) with ``BV_TRACE_DIR`` set, so every node
appends timestamped marks (one clock for all processes: ``CLOCK_MONOTONIC``); runs sequential
pipelined writes from one client (or, with ``--tasks N``, N Trio tasks sharing one
``AsyncClient`` for ``--seconds``, of whose writes about 300 are analysed); merges the traces and
prints, per stage, the median and p90 of the time from the proposal (on the leader) to that
stage. Under load a stage is the first matching mark after the proposal (a batch's save, the
next apply...), so the figures show where the waits are, not one write's exact path. Stops
everything it started.
"""

from __future__ import annotations

import argparse
import bisect
import os
import random
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from e2e_cluster import Cluster  # noqa: E402

from beaver_vault.client._pipelined import AsyncPipe  # noqa: E402

VALUE = b'"' + b"v" * 98 + b'"'


async def writes(address: str, n: int) -> list[tuple[int, int]]:
    pipe = await AsyncPipe.connect(address)
    out = []
    try:
        for i in range(n):
            t0 = time.monotonic_ns()
            header, _ = await pipe.request({"op": "put", "key": f"k{i % 1000}"}, VALUE)
            out.append((t0, time.monotonic_ns()))
            if header["status"] != 200:
                raise RuntimeError(header)
    finally:
        await pipe.aclose()
    return out


async def many_writes(url: str, tasks: int, seconds: float) -> dict[int, tuple[int, int]]:
    """N tasks sharing one client; each write's (sent, answered) by its revision (= log index)."""
    from beaver_vault.client import AsyncClient

    out: dict[int, tuple[int, int]] = {}
    async with AsyncClient([url], transport="pipelined") as client:
        await client.put("k0", "x")
        stop_at = trio.current_time() + seconds

        async def task(i: int) -> None:
            rng = random.Random(i)
            while trio.current_time() < stop_at:
                t0 = time.monotonic_ns()
                result = await client.put(f"k{rng.randrange(1000)}", VALUE.decode()[1:-1])
                out[result.revision] = (t0, time.monotonic_ns())

        async with trio.open_nursery() as nursery:
            for i in range(tasks):
                nursery.start_soon(task, i)
    return out


_TIMES: dict[int, list[int]] = {}


def load(trace_dir: Path) -> dict[str, list[tuple[int, str, list[str]]]]:
    by_node: dict[str, list[tuple[int, str, list[str]]]] = {}
    for f in trace_dir.glob("trace.*"):
        rows = []
        node = f.name
        for line in f.read_text().splitlines():
            t, ev, *fields = line.split(" ")
            if not t.isdigit():
                continue  # a line cut short by the truncation below (the nodes write meanwhile)
            if ev == "node":
                node = fields[0]
            rows.append((int(t), ev, [x for x in fields if x]))
        rows.sort(key=lambda r: r[0])  # the worker thread's marks interleave with the loop's
        by_node[node] = rows
    return by_node


def first_after(rows: list[tuple[int, str, list[str]]], t0: int, pred: object) -> int | None:
    found = row_after(rows, t0, pred)
    return None if found is None else found[0]


def row_after(rows: list[tuple[int, str, list[str]]], t0: int, pred: object) -> tuple[int, list[str]] | None:
    """The first mark at or after ``t0`` that ``pred(event, fields)`` accepts: (time, fields)."""
    times = _TIMES.get(id(rows))
    if times is None:
        times = _TIMES[id(rows)] = [r[0] for r in rows]
    for t, ev, f in rows[bisect.bisect_left(times, t0) :]:
        if pred(ev, f):  # type: ignore[operator]
            return t, f
    return None


def analyse(
    by_node: dict[str, list[tuple[int, str, list[str]]]],
    client: list[tuple[int, int]] | None,
    by_index: dict[int, tuple[int, int]] | None = None,
) -> None:
    leader = next(n for n, rows in by_node.items() if any(ev == "propose" for _, ev, _ in rows))
    lrows = by_node[leader]
    followers = [n for n in by_node if n != leader]
    stages: dict[str, list[float]] = defaultdict(list)
    proposals = [(t, int(f[0])) for t, ev, f in lrows if ev == "propose"]
    if by_index is not None:  # many tasks: a sample from the middle of the run
        middle = [(t, i) for t, i in proposals[len(proposals) // 5 : len(proposals) * 4 // 5] if i in by_index]
        for t0, idx in middle[:: max(1, len(middle) // 300)]:
            one(by_node, lrows, followers, stages, t0, idx, *by_index[idx])
        client = list(by_index.values())
    else:
        assert client is not None
        for (t0, idx), (c0, c1) in zip(proposals[20:], client[20:], strict=False):
            one(by_node, lrows, followers, stages, t0, idx, c0, c1)
    order = sorted(stages, key=lambda k: statistics.median(stages[k]))
    print(f"{'stage (time since the leader proposed)':52s} {'p50 ms':>8s} {'p90 ms':>8s}  n")
    for k in order:
        v = sorted(stages[k])
        print(f"{k:52s} {statistics.median(v) / 1e6:8.3f} {v[int(0.9 * len(v))] / 1e6:8.3f}  {len(v)}")
    saves = {n: sum(1 for _, ev, f in rows if ev == "job_start" and f[0] == "save") for n, rows in by_node.items()}
    print(f"save transactions (fsyncs) per node over {len(client)} writes: {saves}")


Rows = list[tuple[int, str, list[str]]]


def one(
    by_node: dict[str, Rows],
    lrows: Rows,
    followers: list[str],
    stages: dict[str, list[float]],
    t0: int,
    idx: int,
    c0: int,
    c1: int,
) -> None:
    if True:
        stages["client send -> propose (leader)"].append(t0 - c0)

        def ms(
            ev_name: str, pred: object, rows: list[tuple[int, str, list[str]]] = lrows, start: int = t0
        ) -> int | None:
            return first_after(rows, start, lambda ev, f: ev == ev_name and pred(f))  # type: ignore[operator]

        def ge(x: str) -> bool:
            return x not in ("-", "?") and int(x) >= idx

        def job(name: str, pred: object, rows: Rows = lrows, start: int = t0) -> tuple[int | None, ...]:
            """A storage job's submit, start, end and hand-back, matched by its sequence number
            (a group commit's marks carry its last job's number, so: the first one >= ours)."""
            sub = row_after(rows, start, lambda ev, f: ev == "job_submit" and f[0] == name and pred(f))  # type: ignore[operator]
            if sub is None:
                return None, None, None, None
            seq = int(sub[1][1])
            out: list[int | None] = [sub[0]]
            for ev_name in ("job_start", "job_end", "job_deliver"):
                out.append(ms(ev_name, lambda f: f[0] == name and int(f[1]) >= seq, rows, out[-1] or start))
            return tuple(out)

        s = ms("send", lambda f: f[0] == "AppendRequest" and f[4] != "-" and int(f[4]) >= idx)
        sub, st, en, dl = job("save", lambda f: ge(f[2]))
        ack = ms(
            "recv",
            lambda f: f[0] == "AppendResponse" and f[3] != "-" and f[3] not in ("True", "False") and int(f[3]) >= idx,
        )
        cm = ms("commit", lambda f: int(f[0]) >= idx)
        hsub, _, hend, _ = job("save", lambda f: f[2] == "-" and ge(f[3]), start=cm or t0)
        applied = ms("applied", lambda f: int(f[0]) == idx)  # its apply's completion, handled on the loop
        asub = ast = aen = adl = None
        if applied is not None:  # the apply job handed back just before: its sequence number
            times = _TIMES[id(lrows)]
            for _t, ev, f in reversed(lrows[: bisect.bisect_right(times, applied)]):
                if ev == "job_deliver" and f[0] == "apply":
                    seq = int(f[1])
                    asub, ast, aen, adl = job("apply", lambda f, seq=seq: int(f[1]) == seq)  # type: ignore[misc]
                    break
        ans = ms("answer", lambda f: int(f[0]) == idx)
        for name, t in [
            ("leader: AppendRequests sent", s),
            ("leader: save submitted", sub),
            ("leader: save started on worker", st),
            ("leader: save fsynced", en),
            ("leader: save completion on the loop", dl),
            ("leader: first AppendResponse received", ack),
            ("leader: commit advanced", cm),
            ("leader: commit-only hard state save submitted", hsub),
            ("leader: commit-only hard state save done", hend),
            ("leader: apply submitted", asub),
            ("leader: apply started", ast),
            ("leader: apply done", aen),
            ("leader: apply completion on the loop", adl),
            ("leader: its results handled (on_applied)", applied),
            ("leader: answer", ans),
        ]:
            if t is not None:
                stages[name].append(t - t0)
        stages["client: answer received"].append(c1 - t0)
        for fo in followers:
            rows = by_node[fo]
            r = ms("recv", lambda f: f[0] == "AppendRequest" and f[4] != "-" and int(f[4]) >= idx, rows)
            fsub, fst, fen, fdl = job("save", lambda f: ge(f[2]), rows, r or t0)
            fs = ms(
                "send", lambda f: f[0] == "AppendResponse" and f[3] not in ("True", "False") and int(f[3]) >= idx, rows
            )
            for name, t in [
                ("follower: AppendRequest received", r),
                ("follower: save submitted", fsub),
                ("follower: save started", fst),
                ("follower: save fsynced", fen),
                ("follower: save completion on the loop", fdl),
                ("follower: AppendResponse sent", fs),
            ]:
                if t is not None:
                    stages[name].append(t - t0)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--writes", type=int, default=300)
    ap.add_argument("--tick-ms", type=int, default=50)
    ap.add_argument("--tasks", type=int, default=1, help="N tasks sharing one AsyncClient (closed loop)")
    ap.add_argument("--seconds", type=float, default=3.0, help="with --tasks: how long")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="trace-write-"))
    trace_dir = tmp / "trace"
    trace_dir.mkdir()
    os.environ["BV_TRACE_DIR"] = str(trace_dir)
    c = Cluster(
        tmp / "c", extra_args=("--tick-ms", str(args.tick_ms), "--election-ticks", str(max(10, 500 // args.tick_ms)))
    )
    try:
        leader = c.start_cluster(3)
        c.wait_leader()
        st = leader.status() or {}
        for f in trace_dir.glob("trace.*"):
            f.write_text("".join(line + "\n" for line in f.read_text().splitlines() if " node " in line))
        if args.tasks > 1:
            by_index = trio.run(many_writes, leader.url, args.tasks, args.seconds)
        else:
            client = trio.run(writes, st["pipelined_address"], args.writes)
    finally:
        c.close()
    if args.tasks > 1:
        print(
            f"{len(by_index)} writes from {args.tasks} tasks in {args.seconds:g} s: {len(by_index) / args.seconds:.0f}/s"
        )
        analyse(load(trace_dir), None, by_index)
    else:
        analyse(load(trace_dir), client)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
