"""CPU per operation of the pipelined path: N Trio tasks sharing one ``AsyncClient``
(``transport="pipelined"``) against a small cluster, closed loop.

    .venv/bin/python bench/pipe_cpu.py [--nodes 1] [--clients 16] [--seconds 3] [--phases reads,writes]
    PYTHONPATH=/path/to/other/src .venv/bin/python bench/pipe_cpu.py   # the same load on other code

Prints per phase: ops/s, server CPU per operation (all nodes, from /proc) and this process's CPU
per operation (the client). ``--profile-server`` runs node1 under cProfile and prints its top
functions; ``--profile-client FILE`` writes the client's profile. The machine is shared: alternate
runs of the two versions being compared and look at several pairs, not one.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import random
import sys
import tempfile
import time
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from e2e_cluster import Cluster  # noqa: E402
from load import VALUE, _cpu_s, _proc_cpu_s  # noqa: E402

KEYS = 1000


async def phase(url: str, workload: str, clients: int, seconds: float) -> tuple[int, float, float]:
    from beaver_vault.client import AsyncClient

    value = json.loads(VALUE)
    ops = 0
    async with AsyncClient([url], transport="pipelined") as client:
        await client.put("k0", value)  # connect
        stop_at = trio.current_time() + seconds

        async def task(i: int) -> None:
            nonlocal ops
            rng = random.Random(i)
            while trio.current_time() < stop_at:
                key = f"k{rng.randrange(KEYS)}"
                if workload == "writes":
                    await client.put(key, value)
                else:
                    try:
                        await client.get(key)
                    except Exception:  # noqa: BLE001 - a key not written yet: counted all the same
                        pass
                ops += 1

        cpu0, t0 = _cpu_s(), time.perf_counter()
        async with trio.open_nursery() as nursery:
            for i in range(clients):
                nursery.start_soon(task, i)
        return ops, time.perf_counter() - t0, _cpu_s() - cpu0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=1)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--phases", default="reads,writes")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--profile-server", action="store_true")
    parser.add_argument("--profile-client", default="")
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="beaver-vault-pipe-cpu-"))
    cluster = Cluster(tmp, extra_args=("--log-level", "WARNING"))
    server_profile = Path(os.environ.get("BV_PROF_OUT", str(tmp / "node1.prof")))
    try:
        node1 = cluster.add("node1")
        if args.profile_server:
            node1.launcher = (sys.executable, "-m", "cProfile", "-o", str(server_profile), "-m", "beaver_vault")
        leader = cluster.start_cluster(args.nodes)
        pids = [n.proc.pid for n in cluster.nodes.values() if n.proc]
        profiler = cProfile.Profile() if args.profile_client else None
        for _ in range(args.rounds):
            for workload in args.phases.split(","):
                server0 = sum(_proc_cpu_s(p) for p in pids)
                if profiler:
                    profiler.enable()
                ops, wall, client_cpu = trio.run(phase, leader.url, workload, args.clients, args.seconds)
                if profiler:
                    profiler.disable()
                server = sum(_proc_cpu_s(p) for p in pids) - server0
                print(
                    f"{workload:7s} ops/s {ops / wall:7.0f}  server CPU/op {server / ops * 1e6:5.0f} us"
                    f"  client CPU/op {client_cpu / ops * 1e6:5.0f} us",
                    flush=True,
                )
        if profiler:
            profiler.dump_stats(args.profile_client)
        if args.profile_server:
            node1.stop(timeout_s=20)
    finally:
        cluster.close()
    if args.profile_server and server_profile.exists():
        pstats.Stats(str(server_profile)).sort_stats("tottime").print_stats(40)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
