"""Beaver-Vault next to etcd on this machine: one command, one run, the same closed-loop load.

    bench/compare_etcd.sh [--seconds 3] [--clients 1,16,64] [--out bench/results]

What it does, in order (everything it starts, it stops by PID at the end, also on Ctrl-C):

1. Installs Debian's ``etcd-server`` with apt-get if ``etcd`` is not on PATH.
2. Starts a 3-node etcd (loopback ports, temporary data dirs, the Debian defaults otherwise)
   and a 3-node Beaver-Vault (``tests/e2e_cluster.py``, default settings: 50 ms ticks).
3. Starts the trivial Quart-Trio route (``bench/trivial_server.py --mode quart``): the HTTP
   stack's ceiling, for the "HTTP writes vs trivial route" ratio.
4. Writes the same 1,000 keys (100-byte values) into both, then runs, for each client count,
   closed-loop phases (every client sends its next request when the previous answer came):

   * raw-socket HTTP/1.1 keep-alive clients (``bench/load.py``'s generator) against etcd's
     JSON gateway (``/v3/kv/put``, ``/v3/kv/range``: linearizable by default) and against
     Beaver-Vault's HTTP API: writes to the leader, linearizable reads on the leader, and
     linearizable reads spread over all three nodes;
   * Beaver-Vault's pipelined protocol through the project's own ``AsyncClient``: N Trio tasks
     sharing ONE client in this process (writes and reads on the leader), and for reads spread
     over all nodes one client per node with the tasks divided among them.

5. Prints one line per phase (ops/s, p50, p99, server CPU per operation summed over the three
   server processes from ``/proc/<pid>/stat``, client CPU), then the ratios, and writes
   ``results.json`` and (with matplotlib, the ``bench`` extra) ``compare_etcd.png``.

The load generator, the pipelined clients and the six servers share this machine's cores, so
the figures are of this machine under this load; run it twice before believing a difference
of 10 %.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import trio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "bench"))
from e2e_cluster import Cluster, free_port  # noqa: E402
from load import VALUE, PhaseResult, _cpu_s, _proc_cpu_s, _run_phase, get_request, put_request, start_trivial, stop  # noqa: E402

KEYS = 1000
HOST = "127.0.0.1"


# --- etcd -----------------------------------------------------------------------------------------


def ensure_etcd() -> str:
    path = shutil.which("etcd")
    if path:
        return path
    print("etcd not found: installing Debian's etcd-server (apt-get)", flush=True)
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    subprocess.run([*sudo, "apt-get", "install", "-y", "etcd-server"], check=True)
    path = shutil.which("etcd") or "/usr/bin/etcd"
    if not Path(path).exists():
        raise SystemExit("etcd-server did not install an etcd binary")
    return path


@dataclass
class Etcd:
    binary: str
    root: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    client_ports: dict[str, int] = field(default_factory=dict)

    def start(self) -> None:
        names = ["e1", "e2", "e3"]
        peer = {n: free_port() for n in names}
        self.client_ports = {n: free_port() for n in names}
        initial = ",".join(f"{n}=http://{HOST}:{peer[n]}" for n in names)
        for n in names:
            data = self.root / n
            data.mkdir(parents=True, exist_ok=True)
            argv = [
                self.binary,
                "--name", n,
                "--data-dir", str(data),
                "--listen-client-urls", f"http://{HOST}:{self.client_ports[n]}",
                "--advertise-client-urls", f"http://{HOST}:{self.client_ports[n]}",
                "--listen-peer-urls", f"http://{HOST}:{peer[n]}",
                "--initial-advertise-peer-urls", f"http://{HOST}:{peer[n]}",
                "--initial-cluster", initial,
                "--initial-cluster-state", "new",
                "--initial-cluster-token", "bench",
                "--log-level", "error",
            ]  # fmt: skip
            log = (self.root / f"{n}.log").open("ab")
            self.procs[n] = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
            log.close()

    def leader(self, timeout_s: float = 30.0) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for n, port in self.client_ports.items():
                try:
                    r = httpx.post(f"http://{HOST}:{port}/v3/maintenance/status", json={}, timeout=1)
                    doc = r.json()
                    if r.status_code == 200 and doc.get("leader") and doc["leader"] == doc["header"]["member_id"]:
                        return n
                except (httpx.HTTPError, ValueError, KeyError):
                    pass
            time.sleep(0.2)
        raise RuntimeError("etcd elected no leader")

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items()}

    def close(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def etcd_put(host: str, key: str) -> bytes:
    body = json.dumps({"key": _b64(key.encode()), "value": _b64(VALUE)}).encode()
    return (
        f"POST /v3/kv/put HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def etcd_get(host: str, key: str) -> bytes:
    body = json.dumps({"key": _b64(key.encode())}).encode()  # serializable=false: linearizable
    return (
        f"POST /v3/kv/range HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


# --- phases -----------------------------------------------------------------------------------------


@dataclass
class Row:
    system: str  # etcd | bv-http | bv-pipelined | trivial
    workload: str  # writes | reads-leader | reads-spread
    clients: int
    ops_per_s: float
    p50_ms: float
    p99_ms: float
    server_cpu_ms_per_op: float
    client_cpu_ms_per_op: float
    errors: int

    def line(self) -> str:
        return (
            f"{self.system:<13} {self.workload:<13} {self.clients:>3}  {self.ops_per_s:>8.0f} ops/s  "
            f"p50 {self.p50_ms:>6.2f} ms  p99 {self.p99_ms:>7.2f} ms  "
            f"server cpu {self.server_cpu_ms_per_op:>5.2f} ms/op  client cpu {self.client_cpu_ms_per_op:>5.3f} ms/op"
            + (f"  errors {self.errors}" if self.errors else "")
        )


def _row(system: str, workload: str, result: PhaseResult, server_cpu_s: float) -> Row:
    ops = max(result.ops, 1)
    return Row(
        system,
        workload,
        result.clients,
        result.ops_per_s,
        result.pct_ms(0.50),
        result.pct_ms(0.99),
        1000 * server_cpu_s / ops,
        1000 * result.client_cpu_s / ops,
        result.errors,
    )


def raw_phase(
    system: str, workload: str, ports: list[int], requests: list[bytes], clients: int, seconds: float, pids: list[int]
) -> Row:
    before = sum(_proc_cpu_s(p) for p in pids)
    result = trio.run(_run_phase, f"{system} {workload}", HOST, ports, requests, clients, seconds)
    # Server CPU over the measured window only is not separable from the warm-up here; the
    # warm-up's share is removed pro rata (it runs at the same rate).
    used = sum(_proc_cpu_s(p) for p in pids) - before
    total_s = result.wall_s + 0.5
    row = _row(system, workload, result, used * result.wall_s / total_s)
    print(row.line(), flush=True)
    return row


async def _pipelined(
    urls: list[str], workload: str, clients: int, seconds: float, warmup_s: float = 0.5
) -> PhaseResult:
    from beaver_vault.client import AsyncClient

    result = PhaseResult(f"bv-pipelined {workload}", clients)
    value = json.loads(VALUE)
    perf = time.perf_counter
    async with AsyncClient(urls[:1], transport="pipelined") as first:
        extra = [AsyncClient([u], transport="pipelined") for u in urls[1:]] if workload == "reads-spread" else []
        clients_list = [first, *extra]
        for c in clients_list:
            await c.get("k0")  # connect
        start = trio.current_time()
        measure_from = start + warmup_s
        stop_at = measure_from + seconds
        cpu0 = [0.0]

        async def task(i: int) -> None:
            client = clients_list[i % len(clients_list)]
            rng = random.Random(f"{workload}/{i}")
            while True:
                now = trio.current_time()
                if now >= stop_at:
                    return
                key = f"k{rng.randrange(KEYS)}"
                t0 = perf()
                try:
                    if workload == "writes":
                        await client.put(key, value)
                    else:
                        await client.get(key)
                    ok = True
                except Exception:  # noqa: BLE001 - counted as an error
                    ok = False
                t1 = perf()
                if now >= measure_from:
                    if ok:
                        result.ops += 1
                        result.latencies.append(t1 - t0)
                    else:
                        result.errors += 1

        async def clock() -> None:
            await trio.sleep_until(measure_from)
            cpu0[0] = _cpu_s()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(clock)
            for i in range(clients):
                nursery.start_soon(task, i)
        result.wall_s = trio.current_time() - measure_from
        result.client_cpu_s = _cpu_s() - cpu0[0]
        for c in extra:
            await c.aclose()
    return result


def pipelined_phase(urls: list[str], workload: str, clients: int, seconds: float, pids: list[int]) -> Row:
    before = sum(_proc_cpu_s(p) for p in pids)
    result = trio.run(_pipelined, urls, workload, clients, seconds)
    used = sum(_proc_cpu_s(p) for p in pids) - before
    row = _row("bv-pipelined", workload, result, used * result.wall_s / (result.wall_s + 0.5))
    print(row.line(), flush=True)
    return row


# --- report -----------------------------------------------------------------------------------------


def find(rows: list[Row], system: str, workload: str, clients: int) -> Row | None:
    return next((r for r in rows if (r.system, r.workload, r.clients) == (system, workload, clients)), None)


def ratios(rows: list[Row], counts: list[int]) -> list[str]:
    out: list[str] = []
    for workload in ("writes", "reads-leader", "reads-spread"):
        for n in counts:
            etcd = find(rows, "etcd", workload, n)
            if etcd is None or not etcd.ops_per_s:
                continue
            parts = []
            for system in ("bv-http", "bv-pipelined"):
                r = find(rows, system, workload, n)
                if r is not None:
                    parts.append(f"{system} {r.ops_per_s / etcd.ops_per_s:.2f}x")
            out.append(f"{workload:<13} {n:>3} clients vs etcd: " + ", ".join(parts))
    trivial = find(rows, "trivial", "writes", 16)
    http16 = find(rows, "bv-http", "writes", 16)
    if trivial is not None and http16 is not None and trivial.ops_per_s:
        out.append(f"HTTP writes at 16 clients vs the trivial Quart-Trio route: {http16.ops_per_s / trivial.ops_per_s:.2f}x")
    for system in ("bv-http", "bv-pipelined"):
        mine, etcd = find(rows, system, "writes", 1), find(rows, "etcd", "writes", 1)
        if mine is not None and etcd is not None:
            out.append(f"write p50 at 1 client: {system} {mine.p50_ms:.2f} ms, etcd {etcd.p50_ms:.2f} ms")
    return out


def chart(rows: list[Row], counts: list[int], path: Path) -> str:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "no chart: matplotlib is not installed (pip install -e '.[bench]')"
    workloads = ("writes", "reads-leader", "reads-spread")
    systems = ("etcd", "bv-http", "bv-pipelined")
    fig, axes = plt.subplots(1, len(workloads), figsize=(15, 4.5))
    width = 0.8 / len(systems)
    for ax, workload in zip(axes, workloads, strict=True):
        for i, system in enumerate(systems):
            values = [(r.ops_per_s if (r := find(rows, system, workload, n)) else 0.0) for n in counts]
            xs = [j + i * width for j in range(len(counts))]
            ax.bar(xs, values, width, label=system)
        ax.set_xticks([j + width for j in range(len(counts))], [f"{n} clients" for n in counts])
        ax.set_title(workload)
        ax.set_ylabel("ops/s")
    axes[0].legend()
    fig.suptitle("Beaver-Vault vs etcd, 3 nodes on loopback, 100-byte values, 1,000 keys (one run)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return f"chart: {path}"


# --- main -------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="measured seconds per phase (default 3)")
    ap.add_argument("--clients", default="1,16,64")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results"))
    args = ap.parse_args(argv)
    counts = [int(c) for c in args.clients.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    binary = ensure_etcd()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    tmp = Path(tempfile.mkdtemp(prefix="compare-etcd-"))
    etcd = Etcd(binary, tmp / "etcd")
    bv = Cluster(tmp / "bv", extra_args=())
    trivial: subprocess.Popen[str] | None = None
    rows: list[Row] = []
    try:
        etcd.start()
        bv_leader = bv.start_cluster(3)
        e_leader = etcd.leader()
        trivial, trivial_port = start_trivial("quart")
        print(f"{version}; Beaver-Vault leader {bv_leader.node_id}; etcd leader {e_leader}", flush=True)

        e_ports = list(etcd.client_ports.values())
        e_leader_port = etcd.client_ports[e_leader]
        e_pids = list(etcd.pids().values())
        nodes = bv.live()
        b_ports = [n.http_port for n in nodes]
        b_pids = [n.proc.pid for n in nodes if n.proc is not None]
        b_urls = [bv_leader.url] + [n.url for n in nodes if n is not bv_leader]
        keys = [f"k{i}" for i in range(KEYS)]

        # The same 1,000 keys in both.
        from load import _preload

        trio.run(_preload, HOST, e_leader_port, [etcd_put(HOST, k) for k in keys])
        trio.run(_preload, HOST, bv_leader.http_port, [put_request(HOST, k) for k in keys])

        for n in counts:
            if n == 16:
                trivial_puts = [put_request(HOST, k) for k in keys]
                rows.append(raw_phase("trivial", "writes", [trivial_port], trivial_puts, n, args.seconds, [trivial.pid]))
            rows.append(raw_phase("etcd", "writes", [e_leader_port], [etcd_put(HOST, k) for k in keys], n, args.seconds, e_pids))
            rows.append(raw_phase("bv-http", "writes", [bv_leader.http_port], [put_request(HOST, k) for k in keys], n, args.seconds, b_pids))
            rows.append(pipelined_phase(b_urls, "writes", n, args.seconds, b_pids))
            rows.append(raw_phase("etcd", "reads-leader", [e_leader_port], [etcd_get(HOST, k) for k in keys], n, args.seconds, e_pids))
            rows.append(raw_phase("bv-http", "reads-leader", [bv_leader.http_port], [get_request(HOST, k) for k in keys], n, args.seconds, b_pids))
            rows.append(pipelined_phase(b_urls, "reads-leader", n, args.seconds, b_pids))
            if n >= 3:
                rows.append(raw_phase("etcd", "reads-spread", e_ports, [etcd_get(HOST, k) for k in keys], n, args.seconds, e_pids))
                rows.append(raw_phase("bv-http", "reads-spread", b_ports, [get_request(HOST, k) for k in keys], n, args.seconds, b_pids))
                rows.append(pipelined_phase(b_urls, "reads-spread", n, args.seconds, b_pids))
    finally:
        if trivial is not None:
            stop(trivial)
        bv.close()
        etcd.close()
        shutil.rmtree(tmp, ignore_errors=True)

    print("\nratios (Beaver-Vault / etcd, same run):")
    lines = ratios(rows, counts)
    for line in lines:
        print("  " + line)
    doc: dict[str, Any] = {"etcd": version, "seconds": args.seconds, "rows": [r.__dict__ for r in rows], "ratios": lines}
    (out / "results.json").write_text(json.dumps(doc, indent=1))
    print(chart(rows, counts, out / "compare_etcd.png"))
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
