"""Load generator: ops/s and p50/p99 latency of a local 3-node cluster, next to a trivial route.

    .venv/bin/python bench/load.py [--seconds 3] [--clients 1,16,64] [--profile]
    .venv/bin/python bench/load.py --skip-reference --clients 16 --phases writes --profile   # where time goes

One run, in this order, each phase closed-loop (every client sends its next request as soon as
the previous answer arrived) over keep-alive connections, after a short warm-up:

1. The client's own ceiling: 16 clients against ``bench/trivial_server.py --mode raw`` (a bare
   Trio HTTP responder). This must be far above every other figure, or the generator is what
   is being measured (an httpx client manages only ~800 requests/s here, see STACK.md).
2. A trivial Quart-Trio route on hypercorn (trio) (``--mode quart``): PUTs of 100-byte JSON
   values at each client count. This is the HTTP stack's ceiling on this machine.
3. A real 3-node cluster (``beaver-vault server`` processes, tmp data dirs, started by
   ``tests/e2e_cluster.py``): 1,000 keys are written once, then PUTs of 100-byte JSON values
   over those keys to the leader, then linearizable GETs (the default) from the leader.

It prints one line per phase and the ratio the issue sets a target for: cluster writes at 16
clients / trivial route at 16 clients (target >= 0.8).

``--profile`` runs node1 (the bootstrapping node, normally the leader) under ``python -m
cProfile`` and prints where its time went after the run (own time per component, then the top
functions). cProfile slows the node down, so the
figures of a profiled run are not the benchmark's figures.

The client: plain Trio TCP streams speaking just enough HTTP/1.1 (requests are pre-built
bytes; responses are split on the header block and Content-Length), all clients in this one
process. Its CPU use is printed per phase: on this 2-core machine the servers and the client
share the cores.
"""

from __future__ import annotations

import argparse
import json
import os
import pstats
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from e2e_cluster import Cluster, Node  # noqa: E402

KEYS = 1000
VALUE = json.dumps({"v": "x" * 90}, separators=(",", ":")).encode()
VALUE = VALUE[:-2] + b"x" * (100 - len(VALUE)) + b'"}'
assert len(VALUE) == 100 and json.loads(VALUE)
WARMUP_S = 0.5


def put_request(host: str, key: str) -> bytes:
    return (
        f"PUT /api/v1/kv/{key} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(VALUE)}\r\n\r\n"
    ).encode() + VALUE


def get_request(host: str, key: str) -> bytes:
    return f"GET /api/v1/kv/{key} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()


@dataclass
class PhaseResult:
    name: str
    clients: int
    ops: int = 0
    errors: int = 0
    wall_s: float = 0.0
    client_cpu_s: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)

    @property
    def ops_per_s(self) -> float:
        return self.ops / self.wall_s if self.wall_s else 0.0

    def pct_ms(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        data = sorted(self.latencies)
        return 1000.0 * data[min(len(data) - 1, int(p * len(data)))]

    def line(self) -> str:
        errs = f"  errors {self.errors} {dict(sorted(self.statuses.items()))}" if self.errors else ""
        cpu = 100.0 * self.client_cpu_s / self.wall_s if self.wall_s else 0.0
        return (
            f"{self.name:<34} clients {self.clients:>3}  {self.ops_per_s:>8.0f} ops/s  "
            f"p50 {self.pct_ms(0.50):>7.2f} ms  p99 {self.pct_ms(0.99):>7.2f} ms  "
            f"(client cpu {cpu:>3.0f}%){errs}"
        )


class Conn:
    """One keep-alive HTTP/1.1 connection: send pre-built request bytes, read one response."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.stream: trio.SocketStream | None = None
        self.buf = bytearray()

    async def request(self, data: bytes) -> tuple[int, bytes]:
        if self.stream is None:
            self.stream = await trio.open_tcp_stream(self.host, self.port)
            self.buf.clear()
        stream = self.stream
        await stream.send_all(data)
        buf = self.buf
        end = buf.find(b"\r\n\r\n")
        while end < 0:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("server closed the connection")
            buf += chunk
            end = buf.find(b"\r\n\r\n")
        head = bytes(buf[:end]).lower()
        status = int(head[9:12])
        i = head.find(b"\r\ncontent-length:")
        if i < 0:
            raise ConnectionError(f"response without Content-Length: {head[:200]!r}")
        length = int(head[i + 17 :].split(b"\r\n", 1)[0])
        need = end + 4 + length
        while len(buf) < need:
            chunk = await stream.receive_some(65536)
            if not chunk:
                raise ConnectionError("server closed the connection mid-body")
            buf += chunk
        body = bytes(buf[end + 4 : need])
        del buf[:need]
        if b"\r\nconnection: close" in head:
            await self.aclose()
        return status, body

    async def aclose(self) -> None:
        if self.stream is not None:
            await self.stream.aclose()
            self.stream = None


async def _run_phase(
    name: str, host: str, port: int | list[int], requests: list[bytes], clients: int, seconds: float, seed: int = 0
) -> PhaseResult:
    ports = port if isinstance(port, list) else [port]
    result = PhaseResult(name, clients)
    start = trio.current_time()
    measure_from = start + WARMUP_S
    stop_at = measure_from + seconds
    perf = time.perf_counter
    cpu0 = [0.0]

    async def one_client(c: int) -> None:
        rng = random.Random(f"{seed}/{name}/{c}")
        conn = Conn(host, ports[c % len(ports)])  # spread clients over the given nodes
        n = len(requests)
        try:
            while True:
                now = trio.current_time()
                if now >= stop_at:
                    return
                req = requests[rng.randrange(n)]
                t0 = perf()
                try:
                    status, _ = await conn.request(req)
                except (OSError, ConnectionError, trio.BrokenResourceError):
                    await conn.aclose()
                    status = 599
                t1 = perf()
                if now >= measure_from:
                    if status == 200:
                        result.ops += 1
                        result.latencies.append(t1 - t0)
                    else:
                        result.errors += 1
                        result.statuses[status] = result.statuses.get(status, 0) + 1
        finally:
            await conn.aclose()

    async def clock() -> None:
        await trio.sleep_until(measure_from)
        cpu0[0] = _cpu_s()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(clock)
        for c in range(clients):
            nursery.start_soon(one_client, c)
    result.wall_s = trio.current_time() - measure_from
    result.client_cpu_s = _cpu_s() - cpu0[0]
    return result


def _cpu_s() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process (Linux /proc); 0 if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_phase(
    name: str,
    host: str,
    port: int | list[int],
    requests: list[bytes],
    clients: int,
    seconds: float,
    servers: dict[str, int] | None = None,
) -> PhaseResult:
    """One phase; ``servers`` (name -> pid): print each one's CPU use over the whole phase."""
    before = {n: _proc_cpu_s(pid) for n, pid in (servers or {}).items()}
    t0 = time.monotonic()
    result = trio.run(_run_phase, name, host, port, requests, clients, seconds)
    wall = time.monotonic() - t0
    line = result.line()
    if servers:
        used = ", ".join(f"{n} {100 * (_proc_cpu_s(pid) - before[n]) / wall:.0f}%" for n, pid in servers.items())
        line += f"  [server cpu: {used}]"
    print(line, flush=True)
    return result


async def _preload(host: str, port: int, requests: list[bytes], clients: int = 16) -> int:
    failures = 0

    async def worker(c: int) -> None:
        nonlocal failures
        conn = Conn(host, port)
        try:
            for i in range(c, len(requests), clients):
                for _attempt in range(20):
                    status, body = await conn.request(requests[i])
                    if status == 200:
                        break
                    await trio.sleep(0.1)
                else:
                    failures += 1
        finally:
            await conn.aclose()

    async with trio.open_nursery() as nursery:
        for c in range(clients):
            nursery.start_soon(worker, c)
    return failures


# --- servers ------------------------------------------------------------------------------------


def start_trivial(mode: str) -> tuple[subprocess.Popen[str], int]:
    proc = subprocess.Popen(
        [sys.executable, str(ROOT / "bench" / "trivial_server.py"), "--mode", mode],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    if not line.startswith("READY"):
        proc.kill()
        raise RuntimeError(f"trivial server ({mode}) did not start: {line!r}")
    return proc, int(line.split()[1])


def stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


COMPONENTS = (
    # (label, substring of the code's file name); the first match wins
    ("beaver_vault.storage (sqlite)", "beaver_vault/storage"),
    ("beaver_vault.raft", "beaver_vault/raft"),
    ("beaver_vault.node", "beaver_vault/node"),
    ("beaver_vault.transport", "beaver_vault/transport"),
    ("beaver_vault.kv", "beaver_vault/kv"),
    ("beaver_vault.api", "beaver_vault/api"),
    ("beaver_vault (other)", "beaver_vault/"),
    ("hypercorn", "hypercorn/"),
    ("h11", "h11/"),
    ("quart / quart_trio", "quart"),
    ("werkzeug", "werkzeug/"),
    ("trio", "trio/"),
)


def component_of(filename: str, func: str) -> str:
    for label, needle in COMPONENTS:
        if needle in filename:
            return label
    if filename == "~":  # C functions: name them by what they are
        if "sqlite3" in func:
            return "sqlite3 (C: execute/commit, incl. fsync wait)"
        if "epoll" in func:
            return "epoll wait (idle)"
        if "socket" in func:
            return "socket send/recv (C)"
        return "other C builtins"
    return "other Python (stdlib, json, ...)"


def print_profile(path: Path, top: int) -> None:
    stats = pstats.Stats(str(path))
    total = max(getattr(stats, "total_tt", 0.0), 1e-9)
    print(f"\n--- profile of node1 ({path}); total {total:.1f} s (wall clock, as cProfile measures) ---")
    by: dict[str, float] = {}
    for (filename, _line, func), (_cc, _nc, tt, _ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        label = component_of(filename, func)
        by[label] = by.get(label, 0.0) + tt
    print("\n own time (tottime) by component:")
    for label, tt in sorted(by.items(), key=lambda kv: -kv[1]):
        print(f"   {label:<48} {tt:7.2f} s  {100 * tt / total:5.1f}%")
    for key in ("tottime", "cumulative"):
        print(f"\n top {top} by {key}:")
        stats.sort_stats(key).print_stats(top)


# --- main ---------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=3.0, help="measured seconds per phase (default 3)")
    parser.add_argument("--clients", default="1,16,64", help="client counts (default 1,16,64)")
    parser.add_argument("--profile", action="store_true", help="run node1 under cProfile and print its profile")
    parser.add_argument("--profile-top", type=int, default=30)
    parser.add_argument("--skip-reference", action="store_true", help="only the cluster phases")
    parser.add_argument(
        "--phases",
        default="writes,reads",
        help="cluster phases to run (default writes,reads; also spread-reads: clients spread over every node)",
    )
    parser.add_argument("--nodes", type=int, default=3, help="cluster size (default 3)")
    parser.add_argument("--keep", action="store_true", help="keep the cluster's tmp directory")
    parser.add_argument("--node-arg", action="append", default=[], help="extra flag for every node (repeatable)")
    args = parser.parse_args(argv)
    counts = [int(x) for x in args.clients.split(",") if x]
    host = "127.0.0.1"
    put_reqs = [put_request(host, f"bench/{k}") for k in range(KEYS)]
    get_reqs = [get_request(host, f"bench/{k}") for k in range(KEYS)]
    print(
        f"bench/load.py: {os.cpu_count()} cores, {args.seconds:g} s per phase after {WARMUP_S:g} s warm-up, "
        f"{KEYS} keys, {len(VALUE)}-byte JSON values, closed-loop keep-alive clients in one Trio process",
        flush=True,
    )

    results: dict[tuple[str, int], PhaseResult] = {}
    if not args.skip_reference:
        proc, port = start_trivial("raw")
        try:
            results[("raw", 16)] = run_phase(
                "client ceiling (bare Trio server)", host, port, put_reqs, 16, args.seconds, {"raw": proc.pid}
            )
        finally:
            stop(proc)
        proc, port = start_trivial("quart")
        try:
            for n in counts:
                results[("trivial", n)] = run_phase(
                    "trivial Quart-Trio route, PUT", host, port, put_reqs, n, args.seconds, {"trivial": proc.pid}
                )
            if 16 not in counts:
                results[("trivial", 16)] = run_phase(
                    "trivial Quart-Trio route, PUT", host, port, put_reqs, 16, args.seconds, {"trivial": proc.pid}
                )
        finally:
            stop(proc)

    tmp = Path(tempfile.mkdtemp(prefix="beaver-vault-bench-"))
    cluster = Cluster(tmp, extra_args=("--log-level", "WARNING", *args.node_arg))
    profile_path = tmp / "node1.prof"
    try:
        node1 = cluster.add("node1")
        if args.profile:
            node1.launcher = (sys.executable, "-m", "cProfile", "-o", str(profile_path), "-m", "beaver_vault")
        leader: Node = cluster.start_cluster(args.nodes)
        print(f"cluster: leader {leader.node_id} at {leader.url}; data and logs in {tmp}", flush=True)
        if args.profile and leader is not node1:
            print("note: node1 (profiled) is not the leader; its profile is a follower's", flush=True)
        pids = {n.node_id + ("*" if n is leader else ""): n.proc.pid for n in cluster.nodes.values() if n.proc}
        failures = trio.run(_preload, host, leader.http_port, put_reqs)
        if failures:
            print(f"warning: {failures} of {KEYS} preload writes failed", flush=True)
        phases = set(args.phases.split(","))
        for n in counts if "writes" in phases else []:
            results[("write", n)] = run_phase(
                "cluster writes (PUT to the leader)", host, leader.http_port, put_reqs, n, args.seconds, pids
            )
        for n in counts if "reads" in phases else []:
            results[("read", n)] = run_phase(
                "cluster linearizable reads (leader)", host, leader.http_port, get_reqs, n, args.seconds, pids
            )
        for n in counts if "spread-reads" in phases else []:
            ports = [node.http_port for node in cluster.nodes.values()]
            results[("spread", n)] = run_phase(
                f"cluster linearizable reads spread over {len(ports)} nodes",
                host,
                ports,
                get_reqs,
                n,
                args.seconds,
                pids,
            )
        if ("write", 16) not in results:
            results[("write", 16)] = run_phase(
                "cluster writes (PUT to the leader)", host, leader.http_port, put_reqs, 16, args.seconds, pids
            )
        final = cluster.wait_leader()
        if final is not leader:
            print(f"warning: leadership moved from {leader.node_id} to {final.node_id} during the run", flush=True)
        if args.profile:
            node1.stop(timeout_s=20)
    finally:
        cluster.close()

    if ("trivial", 16) in results:
        w, t = results[("write", 16)], results[("trivial", 16)]
        ratio = w.ops_per_s / t.ops_per_s if t.ops_per_s else float("nan")
        print(
            f"\nratio: cluster writes at 16 clients / trivial Quart-Trio route at 16 clients = "
            f"{w.ops_per_s:.0f} / {t.ops_per_s:.0f} = {ratio:.2f} (target >= 0.8)",
            flush=True,
        )
        ceiling = results[("raw", 16)].ops_per_s
        print(
            f"client ceiling {ceiling:.0f} ops/s = {ceiling / max(t.ops_per_s, 1):.1f}x the trivial route", flush=True
        )
    if args.profile:
        if profile_path.exists():
            print_profile(profile_path, args.profile_top)
        else:
            print(f"no profile written at {profile_path} (see {cluster['node1'].log_path})")
    if not args.keep:
        import shutil

        shutil.rmtree(tmp, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
